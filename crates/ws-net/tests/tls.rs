//! wss://: an echo round trip over TLS with a certificate made at test time.

mod common;

use std::sync::Arc;

use common::{listener, next_message, within};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use ws_net::{ClientBuilder, Config, Message};

fn acceptor() -> (TlsAcceptor, Vec<u8>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_der = cert.cert.der().to_vec();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert_der.clone())], key)
        .unwrap();
    (TlsAcceptor::from(Arc::new(config)), cert_der)
}

async fn tls_echo_server() -> (u16, Vec<u8>) {
    let (acceptor, cert) = acceptor();
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = ws_net::server::accept(tls, Config::default()).await else {
                    return;
                };
                common::echo_loop(&mut ws).await;
            });
        }
    });
    (addr.port(), cert)
}

#[tokio::test]
async fn wss_echo_round_trip() {
    let (port, cert) = tls_echo_server().await;
    let (mut ws, _) = within(
        ClientBuilder::new(&format!("wss://localhost:{port}/"))
            .unwrap()
            .add_root_certificate(cert)
            .connect(),
    )
    .await
    .unwrap();
    for len in [0, 100, 70_000, 1 << 20] {
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        ws.send(Message::binary(data.clone())).await.unwrap();
        assert_eq!(next_message(&mut ws).await, Some(Message::binary(data)));
    }
    ws.send(Message::text("over TLS")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Some(Message::text("over TLS")));
    ws.close(ws_net::CloseCode::NORMAL, "").await.unwrap();
    assert!(matches!(
        next_message(&mut ws).await,
        Some(Message::Close(_))
    ));
    assert_eq!(next_message(&mut ws).await, None);
}

#[tokio::test]
async fn untrusted_certificate_is_refused_unless_insecure() {
    let (port, _) = tls_echo_server().await;
    let url = format!("wss://localhost:{port}/");
    let err = within(ClientBuilder::new(&url).unwrap().connect())
        .await
        .unwrap_err();
    assert!(matches!(err, ws_net::ConnectError::Io(_)), "{err:?}");
    let (mut ws, _) = within(
        ClientBuilder::new(&url)
            .unwrap()
            .danger_accept_invalid_certs(true)
            .connect(),
    )
    .await
    .unwrap();
    ws.send(Message::text("insecure ok")).await.unwrap();
    assert_eq!(
        next_message(&mut ws).await,
        Some(Message::text("insecure ok"))
    );
}
