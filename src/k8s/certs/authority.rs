//! The certificate authority and serving certificate, as a pure function of what the Secret holds
//! and the time: no Kubernetes here.
//!
//! A rotation never drops a request. The serving certificate is reissued by the same CA while
//! a third of its lifetime remains, and the apiserver already trusts that CA. The CA itself is
//! renewed in two steps: first the new CA joins the bundle (old one kept) and the bundle is
//! published as the webhook configuration's `caBundle`; only once the apiserver trusts both is a
//! serving certificate issued by the new CA. Expired CAs then leave the bundle.

use std::fmt::Write as _;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// What the Secret holds, as PEM text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    /// The CAs the apiserver must trust, newest (the signing one) first.
    pub ca_bundle: String,
    /// Private key of the newest CA.
    pub ca_key: String,
    /// Serving certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

/// Lifetimes and names of what is issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuance {
    /// DNS names (or IP addresses) the serving certificate is valid for.
    pub names: Vec<String>,
    pub ca_validity_seconds: i64,
    pub cert_validity_seconds: i64,
}

/// What [`decide`] decided.
#[derive(Debug, Clone)]
pub struct Decision {
    pub material: Material,
    /// Why the material changed, when it did.
    pub change: Option<&'static str>,
    /// Unix time at which the material must be looked at again (a renewal or an expiry).
    pub next_check: i64,
    /// Expiry (unix seconds) of the serving certificate.
    pub cert_not_after: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("unreadable certificate: {0}")]
    Pem(#[source] x509_parser::error::PEMError),
    #[error("unreadable certificate: {0}")]
    X509(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    #[error("unreadable certificate: no certificate in the PEM text")]
    NoCertificate,
    #[error("unreadable certificate: time {unix}: {source}")]
    Time {
        unix: i64,
        source: time::error::ComponentRange,
    },
}

/// The facts of one certificate that the decision needs.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub not_before: i64,
    pub not_after: i64,
    public_key: Vec<u8>,
    names: Vec<String>,
    pem: String,
    der: Vec<u8>,
}

/// Certificates are valid from this many seconds before their issuance, for clock skew.
const BACKDATE: i64 = 60;

impl CertInfo {
    /// When it was issued (it is valid from a little earlier).
    fn issued(&self) -> i64 {
        self.not_before + BACKDATE
    }

    fn renew_at(&self) -> i64 {
        // Renew with a third of the lifetime left.
        self.not_after - (self.not_after - self.issued()) / 3
    }

    /// How long a new CA must have been published before it signs: the apiservers pick up a
    /// webhook configuration change through an informer, within a second or so.
    fn trusted_at(&self) -> i64 {
        self.issued() + ((self.not_after - self.issued()) / 10).min(60)
    }
}

/// Parses every certificate of a PEM bundle, in order.
pub fn parse_bundle(pem: &str) -> Result<Vec<CertInfo>, CertError> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(CertError::Pem)?;
        let cert = block.parse_x509().map_err(CertError::X509)?;
        let names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|name| match name {
                        x509_parser::extensions::GeneralName::DNSName(dns) => {
                            Some((*dns).to_owned())
                        }
                        x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                            4 => <[u8; 4]>::try_from(*ip)
                                .ok()
                                .map(|a| IpAddr::from(a).to_string()),
                            16 => <[u8; 16]>::try_from(*ip)
                                .ok()
                                .map(|a| IpAddr::from(a).to_string()),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(CertInfo {
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
            names,
            pem: pem_block("CERTIFICATE", &block.contents),
            der: block.contents.clone(),
        });
    }
    if out.is_empty() {
        return Err(CertError::NoCertificate);
    }
    Ok(out)
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    let _ = writeln!(out, "-----END {label}-----");
    out
}

fn time(unix: i64) -> Result<time::OffsetDateTime, CertError> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|source| CertError::Time { unix, source })
}

/// Whether `ca`'s key signed `cert`: checked on the signature, not on the issuer's name, which
/// any CA could bear.
fn signed_by(cert: &CertInfo, ca: &CertInfo) -> bool {
    use x509_parser::prelude::FromDer;
    let (Ok((_, cert)), Ok((_, ca))) = (
        x509_parser::certificate::X509Certificate::from_der(&cert.der),
        x509_parser::certificate::X509Certificate::from_der(&ca.der),
    ) else {
        return false;
    };
    cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

fn key_matches(key_pem: &str, cert: &CertInfo) -> bool {
    KeyPair::from_pem(key_pem).is_ok_and(|key| key.public_key_raw() == cert.public_key.as_slice())
}

/// A new CA, valid from a minute ago (clock skew) for `validity` seconds.
fn new_ca(now: i64, validity: i64) -> Result<(String, String), CertError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "jobtrace");
    // The time makes each CA's subject unique, which is how a certificate's issuer is found.
    name.push(DnType::CommonName, format!("jobtrace webhook CA {now}"));
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = time(now - BACKDATE)?;
    params.not_after = time(now + validity)?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A serving certificate for `names`, issued by the CA, expiring no later than the CA.
fn issue(
    ca: &CertInfo,
    ca_key: &str,
    names: &[String],
    now: i64,
    validity: i64,
) -> Result<(String, String), CertError> {
    let ca_key = KeyPair::from_pem(ca_key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "jobtrace");
    name.push(
        DnType::CommonName,
        names.first().map_or("jobtrace webhook", String::as_str),
    );
    params.distinguished_name = name;
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = time(now - BACKDATE)?;
    params.not_after = time((now + validity).min(ca.not_after))?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn same_names(have: &[String], want: &[String]) -> bool {
    let mut have = have.to_vec();
    let mut want = want.to_vec();
    have.sort();
    want.sort();
    have == want
}

/// Decides what the Secret should hold now. `current` is what it holds (`None` when missing or
/// unreadable); `published` tells whether the webhook configuration's `caBundle` is already the
/// current bundle (or there is no webhook configuration to publish to).
pub fn decide(
    current: Option<&Material>,
    published: bool,
    now: i64,
    issuance: &Issuance,
) -> Result<Decision, CertError> {
    let parsed = current.and_then(|m| Some((m, parse_bundle(&m.ca_bundle).ok()?)));
    let Some((material, cas)) = parsed else {
        return fresh(issuance, now, "created");
    };
    let signing = &cas[0];
    if signing.not_after <= now || !key_matches(&material.ca_key, signing) {
        return fresh(issuance, now, "the CA expired or its key doesn't match");
    }
    let mut next = material.clone();
    // Expired CAs leave the bundle; the signing one stays.
    let live: Vec<&CertInfo> = cas
        .iter()
        .enumerate()
        .filter(|(i, ca)| *i == 0 || ca.not_after > now)
        .map(|(_, ca)| ca)
        .collect();
    let mut change = None;
    if live.len() < cas.len() {
        next.ca_bundle = live.iter().map(|ca| ca.pem.as_str()).collect();
        change = Some("expired CAs removed from the bundle");
    }
    // Who signs a certificate issued now: the newest CA, except right after a rollover, when the
    // apiserver doesn't trust the new CA yet.
    let sign = (signing, material.ca_key.clone());
    let rolled = now >= signing.renew_at();
    if rolled {
        // Step one of a CA rollover: trust the new CA next to the old one.
        let (ca, ca_key) = new_ca(now, issuance.ca_validity_seconds)?;
        next.ca_bundle = format!("{ca}{}", next.ca_bundle);
        next.ca_key = ca_key;
        change = Some("new CA added to the bundle");
    }
    // The CA's Secret may hold a CA while the serving Secret is missing (another replica is
    // about to write it, or it was deleted): a certificate from that CA, never a CA of our own.
    let cert = parse_bundle(&material.cert)
        .ok()
        .and_then(|c| c.into_iter().next());
    let reissue = match cert {
        None => Some("a serving certificate issued by the stored CA"),
        Some(cert) if cert.not_after <= now || !live.iter().any(|ca| signed_by(&cert, ca)) => {
            Some("the serving certificate expired or no trusted CA signed it")
        }
        Some(cert) if now >= cert.renew_at() => Some("the serving certificate is due for renewal"),
        Some(cert) if !same_names(&cert.names, &issuance.names) => {
            Some("the serving certificate's names changed")
        }
        Some(cert) if !key_matches(&material.key, &cert) => {
            Some("the serving certificate doesn't match its key")
        }
        // Step two of a CA rollover, once the apiservers trust the new CA.
        Some(cert)
            if !rolled
                && !signed_by(&cert, signing)
                && published
                && now >= signing.trusted_at() =>
        {
            Some("the serving certificate moves to the new CA")
        }
        Some(_) => None,
    };
    if let Some(reason) = reissue {
        let (cert, key) = issue(
            sign.0,
            &sign.1,
            &issuance.names,
            now,
            issuance.cert_validity_seconds,
        )?;
        next.cert = cert;
        next.key = key;
        change = Some(reason);
    }
    finish(next, now, change)
}

fn fresh(issuance: &Issuance, now: i64, reason: &'static str) -> Result<Decision, CertError> {
    let (ca_bundle, ca_key) = new_ca(now, issuance.ca_validity_seconds)?;
    let ca = parse_bundle(&ca_bundle)?.remove(0);
    let (cert, key) = issue(
        &ca,
        &ca_key,
        &issuance.names,
        now,
        issuance.cert_validity_seconds,
    )?;
    finish(
        Material {
            ca_bundle,
            ca_key,
            cert,
            key,
        },
        now,
        Some(reason),
    )
}

fn finish(
    material: Material,
    now: i64,
    change: Option<&'static str>,
) -> Result<Decision, CertError> {
    let cas = parse_bundle(&material.ca_bundle)?;
    let cert = parse_bundle(&material.cert)?.remove(0);
    let mut next_check = cert.renew_at().min(cas[0].renew_at());
    // An old CA's expiry is a change too (it leaves the bundle).
    for ca in &cas[1..] {
        next_check = next_check.min(ca.not_after);
    }
    if !signed_by(&cert, &cas[0]) {
        // Waiting for the new CA to be published and trusted: look again soon.
        next_check = next_check.min(cas[0].trusted_at().max(now + 1).min(now + 5));
    }
    Ok(Decision {
        cert_not_after: cert.not_after,
        material,
        change,
        next_check: next_check.max(now + 1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn issuance() -> Issuance {
        Issuance {
            names: vec![
                "jobtrace.jobtrace.svc".to_owned(),
                "jobtrace.jobtrace.svc.cluster.local".to_owned(),
                "127.0.0.1".to_owned(),
            ],
            ca_validity_seconds: 300 * DAY,
            cert_validity_seconds: 30 * DAY,
        }
    }

    const T0: i64 = 1_800_000_000;

    /// The raw issuer (`true`) or subject name of a parsed certificate.
    fn name(cert: &CertInfo, issuer: bool) -> Vec<u8> {
        use x509_parser::prelude::FromDer;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&cert.der).unwrap();
        let name = if issuer {
            cert.issuer()
        } else {
            cert.subject()
        };
        name.as_raw().to_vec()
    }

    fn issuer_of(m: &Material) -> Vec<u8> {
        name(&parse_bundle(&m.cert).unwrap()[0], true)
    }

    fn subjects(m: &Material) -> Vec<Vec<u8>> {
        parse_bundle(&m.ca_bundle)
            .unwrap()
            .iter()
            .map(|c| name(c, false))
            .collect()
    }

    #[test]
    fn creates_a_ca_and_a_certificate_for_the_names() {
        let d = decide(None, true, T0, &issuance()).unwrap();
        assert_eq!(d.change, Some("created"));
        let cert = &parse_bundle(&d.material.cert).unwrap()[0];
        assert!(same_names(&cert.names, &issuance().names));
        assert_eq!(name(cert, true), subjects(&d.material)[0]);
        assert_eq!(cert.not_after, T0 + 30 * DAY);
        assert!(
            cert.not_before < T0,
            "valid a little before now, for clock skew"
        );
        // Renewal of the serving certificate is the next thing to do, at 2/3 of its lifetime.
        assert_eq!(d.next_check, cert.renew_at());
        assert!(d.next_check > T0 + 19 * DAY && d.next_check < T0 + 21 * DAY);
        // The pair loads into rustls.
        let key: rustls::pki_types::PrivateKeyDer =
            rustls::pki_types::pem::PemObject::from_pem_slice(d.material.key.as_bytes()).unwrap();
        assert!(matches!(key, rustls::pki_types::PrivateKeyDer::Pkcs8(_)));
    }

    #[test]
    fn keeps_valid_material_untouched() {
        let first = decide(None, true, T0, &issuance()).unwrap();
        let again = decide(Some(&first.material), true, T0 + DAY, &issuance()).unwrap();
        assert_eq!(again.change, None);
        assert_eq!(again.material, first.material);
    }

    #[test]
    fn renews_the_certificate_with_the_same_ca_before_expiry() {
        let first = decide(None, true, T0, &issuance()).unwrap();
        let later = decide(Some(&first.material), true, first.next_check, &issuance()).unwrap();
        assert_eq!(
            later.change,
            Some("the serving certificate is due for renewal")
        );
        assert_eq!(later.material.ca_bundle, first.material.ca_bundle);
        assert_ne!(later.material.cert, first.material.cert);
        assert_ne!(later.material.key, first.material.key);
        assert!(later.cert_not_after > first.cert_not_after);
    }

    #[test]
    fn names_changed_or_key_swapped_reissue() {
        let first = decide(None, true, T0, &issuance()).unwrap();
        let mut other = issuance();
        other.names.push("jobtrace.other.svc".to_owned());
        let renamed = decide(Some(&first.material), true, T0, &other).unwrap();
        assert_eq!(
            renamed.change,
            Some("the serving certificate's names changed")
        );
        let mut broken = first.material.clone();
        broken.key = renamed.material.key.clone();
        let fixed = decide(Some(&broken), true, T0, &issuance()).unwrap();
        assert_eq!(
            fixed.change,
            Some("the serving certificate doesn't match its key")
        );
    }

    #[test]
    fn a_stored_ca_without_a_serving_certificate_issues_one_and_keeps_the_ca() {
        // Two replicas starting at once: one has stored its CA, not yet its certificate.
        let stored = decide(None, true, T0, &issuance()).unwrap().material;
        let ca_only = Material {
            cert: String::new(),
            key: String::new(),
            ..stored.clone()
        };
        let d = decide(Some(&ca_only), true, T0, &issuance()).unwrap();
        assert_eq!(
            d.change,
            Some("a serving certificate issued by the stored CA")
        );
        assert_eq!(
            (&d.material.ca_bundle, &d.material.ca_key),
            (&stored.ca_bundle, &stored.ca_key),
            "the other replica's CA, not a new one"
        );
        let cas = parse_bundle(&d.material.ca_bundle).unwrap();
        assert!(signed_by(
            &parse_bundle(&d.material.cert).unwrap()[0],
            &cas[0]
        ));
    }

    #[test]
    fn a_certificate_another_ca_of_the_same_name_signed_is_reissued() {
        // Two CAs made in the same second bear the same name; the certificate of one beside the
        // other's bundle is not trusted, whatever its issuer's name says.
        let (a, b) = (
            decide(None, true, T0, &issuance()).unwrap().material,
            decide(None, true, T0, &issuance()).unwrap().material,
        );
        assert_eq!(issuer_of(&a), issuer_of(&b), "the same name");
        let mixed = Material {
            cert: b.cert.clone(),
            key: b.key.clone(),
            ..a.clone()
        };
        let d = decide(Some(&mixed), true, T0 + 1, &issuance()).unwrap();
        assert_eq!(
            d.change,
            Some("the serving certificate expired or no trusted CA signed it")
        );
        let cas = parse_bundle(&d.material.ca_bundle).unwrap();
        assert!(signed_by(
            &parse_bundle(&d.material.cert).unwrap()[0],
            &cas[0]
        ));
        assert_eq!(d.material.ca_key, a.ca_key);
    }

    #[test]
    fn garbage_or_a_foreign_ca_key_start_over() {
        let garbage = Material {
            ca_bundle: "not pem".into(),
            ca_key: String::new(),
            cert: String::new(),
            key: String::new(),
        };
        assert_eq!(
            decide(Some(&garbage), true, T0, &issuance())
                .unwrap()
                .change,
            Some("created")
        );
        let a = decide(None, true, T0, &issuance()).unwrap().material;
        let b = decide(None, true, T0, &issuance()).unwrap().material;
        let mixed = Material {
            ca_key: b.ca_key,
            ..a
        };
        assert_eq!(
            decide(Some(&mixed), true, T0, &issuance()).unwrap().change,
            Some("the CA expired or its key doesn't match")
        );
    }

    #[test]
    fn ca_rollover_trusts_both_before_switching_and_never_serves_an_untrusted_cert() {
        let issuance = issuance();
        let first = decide(None, true, T0, &issuance).unwrap().material;
        let old_ca = subjects(&first)[0].clone();
        // Just past 2/3 of the CA's life, with a serving certificate renewed shortly before.
        let renewed = decide(Some(&first), true, T0 + 199 * DAY, &issuance)
            .unwrap()
            .material;
        let t = T0 + 202 * DAY;
        let step1 = decide(Some(&renewed), true, t, &issuance).unwrap();
        assert_eq!(step1.change, Some("new CA added to the bundle"));
        let bundle = subjects(&step1.material);
        assert_eq!(bundle.len(), 2);
        assert_eq!(bundle[1], old_ca);
        // The serving certificate is still the old CA's until the new bundle is published.
        let waiting = decide(Some(&step1.material), false, t + 10, &issuance).unwrap();
        assert_eq!(issuer_of(&waiting.material), old_ca);
        assert!(waiting.next_check <= t + 15, "looks again soon");
        // Published, but the apiservers get a minute to pick the new bundle up.
        let early = decide(Some(&waiting.material), true, t + 30, &issuance).unwrap();
        assert_eq!(issuer_of(&early.material), old_ca);
        let step2 = decide(Some(&waiting.material), true, t + 61, &issuance).unwrap();
        assert_eq!(
            step2.change,
            Some("the serving certificate moves to the new CA")
        );
        assert_eq!(issuer_of(&step2.material), bundle[0]);
        // The old CA leaves the bundle when it expires, not before.
        let kept = decide(Some(&step2.material), true, T0 + 299 * DAY, &issuance).unwrap();
        assert_eq!(subjects(&kept.material).len(), 2);
        let pruned = decide(Some(&step2.material), true, T0 + 301 * DAY, &issuance).unwrap();
        assert_eq!(subjects(&pruned.material), vec![bundle[0].clone()]);
    }

    #[test]
    fn short_lifetimes_renew_at_two_thirds_not_at_once() {
        let mut issuance = issuance();
        issuance.cert_validity_seconds = 9;
        issuance.ca_validity_seconds = 36;
        let first = decide(None, true, T0, &issuance).unwrap();
        assert_eq!(first.next_check, T0 + 6);
        let same = decide(Some(&first.material), true, T0 + 5, &issuance).unwrap();
        assert_eq!(same.change, None);
        let renewed = decide(Some(&first.material), true, T0 + 6, &issuance).unwrap();
        assert_eq!(
            renewed.change,
            Some("the serving certificate is due for renewal")
        );
    }

    #[test]
    fn serving_certificate_never_outlives_its_ca() {
        let mut issuance = issuance();
        issuance.cert_validity_seconds = 1000 * DAY;
        let d = decide(None, true, T0, &issuance).unwrap();
        let ca = &parse_bundle(&d.material.ca_bundle).unwrap()[0];
        assert_eq!(d.cert_not_after, ca.not_after);
    }
}
