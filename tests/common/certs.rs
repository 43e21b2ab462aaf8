//! Throw-away certificates for the TLS tests, made with the `openssl` command line (scripts/
//! test.sh installs it): a certificate authority per [`TestCa`], and server certificates it
//! signs for the names a test chooses. Keys are P-256 (quick to make, accepted by rustls,
//! PostgreSQL and Redis). Everything lives in a fresh directory removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A certificate authority of one test.
pub struct TestCa {
    dir: PathBuf,
}

/// A certificate and its private key (PEM files).
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): scripts/test.sh installs it"));
    assert!(
        out.status.success(),
        "openssl {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// A new CA named `name` (its subject's common name).
    pub fn new(name: &str) -> TestCa {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tidemark-ca-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        TestCa { dir }
    }

    /// The CA certificate (what clients trust).
    pub fn cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A server certificate for `names` (`DNS:localhost,IP:127.0.0.1`), signed by this CA.
    pub fn server(&self, file: &str, names: &str) -> CertFiles {
        let (key, csr, cert) =
            (format!("{file}.key"), format!("{file}.csr"), format!("{file}.crt"));
        let ext = format!("{file}.ext");
        std::fs::write(
            self.dir.join(&ext),
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
                 extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={names}\n"
            ),
        )
        .expect("write the extensions file");
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                "/CN=tidemark test server",
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
        CertFiles { cert: self.dir.join(cert), key: self.dir.join(key) }
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
