//! The PKI of the tests and benchmarks that serve jobtrace's webhook on this machine.

/// Generates a CA and a serving certificate for 127.0.0.1 and localhost, as PEM, plus the CA's
/// DER for a client's trust store.
pub struct TestPki {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_der: Vec<u8>,
}

impl TestPki {
    pub fn generate() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_der: ca.der().to_vec(),
        }
    }
}
