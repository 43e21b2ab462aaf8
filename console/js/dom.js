// Small DOM helpers. Everything the server sends is put on the page as text (textContent),
// never as HTML, so a value can never become markup.

/** An element with attributes (`on*` become listeners) and children (strings become text). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element, like `h`. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.setAttribute("class", v);
    // through the CSSOM: the console's CSP allows no style attributes
    else if (k === "style") el.style.cssText = v;
    else if ((k === "fill" || k === "stroke") && String(v).startsWith("var(")) el.style.setProperty(k, v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k in el && !(el instanceof SVGElement) && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A cache/plan/status badge. */
export function badge(text, kind = text) {
  return h("span", { class: `badge ${kind}` }, text);
}

/** Shows `text` in the floating tooltip near the pointer event `ev` (null hides it). */
export function tooltip(ev, text) {
  const tip = document.getElementById("tooltip");
  if (!ev || !text) {
    tip.hidden = true;
    return;
  }
  tip.textContent = text;
  tip.hidden = false;
  const x = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  const y = Math.min(ev.clientY + 14, window.innerHeight - tip.offsetHeight - 8);
  tip.style.left = `${x}px`;
  tip.style.top = `${y}px`;
}
