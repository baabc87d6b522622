//! The AWS SDK settings S3 and KMS share: which profile, and which certificate authorities
//! HTTPS trusts. `store::s3` and `kms` both start from `loader`, so every connection sealfs
//! makes (S3, KMS, and the credential providers behind them) goes through `net`'s client and
//! trusts the same roots.
//!
//! The SDK for Rust does not read `AWS_CA_BUNDLE` or a profile's `ca_bundle` itself; the AWS
//! CLI and the other SDKs do, so users of a private-CA endpoint (MinIO, Ceph RGW, a company
//! proxy) set them. sealfs resolves them as the AWS CLI does: `--ca-bundle` first, then
//! `AWS_CA_BUNDLE`, then `ca_bundle` in the selected profile; the bundle found *replaces* the
//! system's roots (as in the CLI), and without one the system's roots are used. A bundle is
//! read and parsed here, before the SDK sees it: a missing file, a file without a certificate
//! or a malformed one stops the command with one line naming the file and where it came from.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use aws_config::ConfigLoader;
use aws_types::os_shim_internal::{Env, Fs};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

mod net;

/// What the user chose for every AWS connection (`None`: the standard chain decides).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// `--profile`: credentials, region, endpoints and `ca_bundle` from this profile.
    pub profile: Option<String>,
    /// `--ca-bundle`: PEM file of the certificate authorities HTTPS trusts.
    pub ca_bundle: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("CA bundle {path} (from {from}): {why}")]
    Bundle {
        path: PathBuf,
        from: String,
        why: String,
    },
    #[error("cannot read the AWS profile files for ca_bundle: {0}")]
    Profile(String),
}

/// A CA bundle and the setting that named it (for error messages and the mount's log).
#[derive(Debug, Clone)]
pub struct Bundle {
    pub path: PathBuf,
    pub from: String,
    /// What HTTPS trusts: the bundle's certificates, each checked usable as a CA.
    pub roots: rustls::RootCertStore,
}

impl Bundle {
    /// How many certificates the bundle holds (every one of them is in `roots`).
    pub fn certificates(&self) -> usize {
        self.roots.len()
    }
}

/// The SDK loader for `settings`: profile chosen, requests through `net`'s client, HTTPS
/// trusting the bundle the settings, environment or profile name (the system's roots when none
/// does).
pub async fn loader(settings: &AwsSettings) -> Result<(ConfigLoader, Option<Bundle>), TrustError> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(p) = &settings.profile {
        loader = loader.profile_name(p);
    }
    let bundle = ca_bundle(settings, &Env::real(), &Fs::real()).await?;
    let roots = match &bundle {
        Some(b) => b.roots.clone(),
        None => net::system_roots(),
    };
    Ok((loader.http_client(net::client(roots)), bundle))
}

/// The mount's log line saying which CA bundle HTTPS trusts (`None`: the system's roots).
pub async fn trust_line(settings: &AwsSettings) -> Option<String> {
    let b = ca_bundle(settings, &Env::real(), &Fs::real())
        .await
        .ok()??;
    Some(format!(
        "HTTPS trusts the {} certificate(s) in {} (from {}), not the system's roots",
        b.certificates(),
        b.path.display(),
        b.from
    ))
}

/// What to add to an error whose cause is a certificate HTTPS did not trust.
pub fn trust_hint(detail: &str) -> &'static str {
    if detail.contains("certificate") || detail.contains("UnknownIssuer") {
        " (an endpoint whose certificate a private CA signed: name the CA's PEM file with AWS_CA_BUNDLE, ca_bundle in the AWS profile, or --ca-bundle)"
    } else {
        ""
    }
}

/// The bundle to trust: `--ca-bundle`, else `AWS_CA_BUNDLE`, else the profile's `ca_bundle`.
pub async fn ca_bundle(
    settings: &AwsSettings,
    env: &Env,
    fs: &Fs,
) -> Result<Option<Bundle>, TrustError> {
    if let Some(path) = &settings.ca_bundle {
        return read(path, "--ca-bundle").map(Some);
    }
    if let Ok(path) = env.get("AWS_CA_BUNDLE") {
        if !path.is_empty() {
            return read(Path::new(&path), "AWS_CA_BUNDLE").map(Some);
        }
    }
    let profile = settings.profile.clone().map(Cow::Owned);
    // Missing default files (~/.aws/config, ~/.aws/credentials) read as empty here.
    let files = aws_runtime::env_config::file::EnvConfigFiles::default();
    let profiles = aws_config::profile::load(fs, env, &files, profile)
        .await
        .map_err(|e| TrustError::Profile(e.to_string()))?;
    match profiles.get("ca_bundle") {
        Some(path) if !path.is_empty() => {
            let from = format!("ca_bundle in profile {}", profiles.selected_profile());
            read(Path::new(path), &from).map(Some)
        }
        _ => Ok(None),
    }
}

/// Read and parse a PEM bundle: every certificate in it must parse, and there must be one.
fn read(path: &Path, from: &str) -> Result<Bundle, TrustError> {
    let fail = |why: String| TrustError::Bundle {
        path: path.to_path_buf(),
        from: from.to_string(),
        why,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not a PEM certificate bundle ({e})")))?;
    if certificates.is_empty() {
        return Err(fail("no PEM certificate in it".into()));
    }
    // A certificate rustls cannot use as a CA is refused here, naming the file.
    let mut roots = rustls::RootCertStore::empty();
    for der in &certificates {
        roots
            .add(der.clone())
            .map_err(|e| fail(format!("a certificate in it is not a usable CA ({e})")))?;
    }
    Ok(Bundle {
        path: path.to_path_buf(),
        from: from.to_string(),
        roots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }
        fn write(&self, name: &str, text: &str) -> String {
            let p = self.dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.to_string_lossy().into_owned()
        }
    }

    fn resolve(
        settings: &AwsSettings,
        env: &[(&str, &str)],
        config: Option<&str>,
    ) -> Result<Option<Bundle>, TrustError> {
        let mut vars = vec![("HOME", "/home/u")];
        vars.extend_from_slice(env);
        let fs = match config {
            Some(text) => Fs::from_slice(&[("/home/u/.aws/config", text)]),
            None => Fs::from_slice(&[]),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(ca_bundle(settings, &Env::from_slice(&vars), &fs))
    }

    fn from(b: Result<Option<Bundle>, TrustError>) -> Option<String> {
        b.unwrap().map(|b| b.from)
    }

    #[test]
    fn the_option_wins_then_the_environment_then_the_profile() {
        let f = Files::new();
        let (a, b, c) = (
            f.write("a.pem", &ca_pem()),
            f.write("b.pem", &ca_pem()),
            f.write("c.pem", &ca_pem()),
        );
        let config = format!("[default]\nca_bundle = {c}\n[profile other]\nca_bundle = {b}\n");
        let option = AwsSettings {
            profile: None,
            ca_bundle: Some(a.clone().into()),
        };
        let env = [("AWS_CA_BUNDLE", b.as_str())];
        let none = AwsSettings::default();
        assert_eq!(
            from(resolve(&option, &env, Some(&config))).as_deref(),
            Some("--ca-bundle")
        );
        let got = resolve(&none, &env, Some(&config)).unwrap().unwrap();
        assert_eq!(
            (got.from.as_str(), got.path),
            ("AWS_CA_BUNDLE", b.clone().into())
        );
        let got = resolve(&none, &[], Some(&config)).unwrap().unwrap();
        assert_eq!(
            (got.from.as_str(), got.certificates(), got.path),
            ("ca_bundle in profile default", 1, c.into())
        );
        // The selected profile: --profile, or AWS_PROFILE.
        let other = AwsSettings {
            profile: Some("other".into()),
            ca_bundle: None,
        };
        assert_eq!(
            from(resolve(&other, &[], Some(&config))).as_deref(),
            Some("ca_bundle in profile other")
        );
        assert_eq!(
            from(resolve(&none, &[("AWS_PROFILE", "other")], Some(&config))).as_deref(),
            Some("ca_bundle in profile other")
        );
        // Nothing set, or no profile files at all: the system's roots.
        assert_eq!(
            from(resolve(&none, &[], Some("[default]\nregion = x\n"))),
            None
        );
        assert_eq!(from(resolve(&none, &[], None)), None);
        assert_eq!(from(resolve(&none, &[("AWS_CA_BUNDLE", "")], None)), None);
    }

    #[test]
    fn a_bundle_that_cannot_be_used_is_refused_naming_the_file_and_the_setting() {
        let f = Files::new();
        let two = f.write("two.pem", &(ca_pem() + &ca_pem()));
        let empty = f.write("empty.pem", "");
        let junk = f.write("junk.pem", "not a certificate\n");
        let broken = f.write(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        let none = AwsSettings::default();
        let got = resolve(&none, &[("AWS_CA_BUNDLE", two.as_str())], None);
        assert_eq!(got.unwrap().unwrap().certificates(), 2);
        for (path, why) in [
            ("/nonexistent/ca.pem", "No such file"),
            (empty.as_str(), "no PEM certificate"),
            (junk.as_str(), "no PEM certificate"),
            (broken.as_str(), "not a usable CA"),
        ] {
            let msg = resolve(&none, &[("AWS_CA_BUNDLE", path)], None)
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains(path) && msg.contains("AWS_CA_BUNDLE") && msg.contains(why),
                "{msg}"
            );
        }
        let config = format!("[default]\nca_bundle = {empty}\n");
        let msg = resolve(&none, &[], Some(&config)).unwrap_err().to_string();
        assert!(msg.contains("ca_bundle in profile default"), "{msg}");
    }

    #[test]
    fn certificate_errors_get_the_hint_and_others_do_not() {
        assert!(trust_hint("invalid peer certificate: UnknownIssuer").contains("AWS_CA_BUNDLE"));
        assert_eq!(trust_hint("connection refused"), "");
    }
}
