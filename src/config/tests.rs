//! Config parsing, defaults and validation.

use super::*;

/// The indented block under `key: |` in a YAML file.
fn yaml_block(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    lines.next();
    let block: Vec<&str> = lines.take_while(|l| l.starts_with("    ") || l.is_empty()).collect();
    block.iter().map(|l| l.strip_prefix("    ").unwrap_or(l)).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_watermark_poll_defaults_by_dialect() {
    let base = "[warehouse]\nurl = \"postgres://h/db\"\n";
    let pg = Config::from_toml_str(base).unwrap();
    assert_eq!(pg.warehouse.watermark_poll().unwrap(), Duration::from_secs(1));
    let rs = Config::from_toml_str(&format!("{base}dialect = \"redshift\"\n")).unwrap();
    assert_eq!(rs.warehouse.watermark_poll().unwrap(), Duration::from_secs(10));
}

#[test]
fn deploy_examples_are_valid_configs() {
    let toml = include_str!("../../deploy/tidemark.toml");
    let cfg = Config::from_toml_str(toml).expect("deploy/tidemark.toml");
    assert!(cfg.warehouse.credentials.is_some() && cfg.redis.is_some());
    let yaml = include_str!("../../deploy/kubernetes.yaml");
    for key in ["tidemark.toml", "setup.toml"] {
        let text = yaml_block(yaml, key);
        assert!(text.contains("[warehouse]"), "{key} not found");
        Config::from_toml_str(&text).unwrap_or_else(|e| panic!("kubernetes.yaml {key}: {e}"));
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("k", "250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("k", "2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("k", "3").unwrap(), Duration::from_secs(3));
    assert!(parse_duration("k", "3 parsecs").is_err());
}

#[test]
fn rejects_bad_identifiers() {
    let text = r#"
        [warehouse]
        url = "postgres://postgres@127.0.0.1/x"
        [[tables]]
        name = "events; drop table x"
        time_column = "t"
        batch_table = "b"
        speed_table = "s"
    "#;
    assert!(Config::from_toml_str(text).is_err());
}

#[test]
fn secrets_do_not_print() {
    let text = r#"
        [warehouse]
        url = "postgres://postgres@127.0.0.1/x"
        [flight]
        token_keys = ["a signing key of thirty-two bytes or more"]
    "#;
    let cfg = Config::from_toml_str(text).expect("config");
    assert_eq!(cfg.flight.token_keys[0].expose(), "a signing key of thirty-two bytes or more");
    let printed = format!("{:?}", cfg.flight);
    assert!(!printed.contains("signing key") && printed.contains("***"), "{printed}");
}
