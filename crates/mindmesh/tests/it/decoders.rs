//! Every decoder of outside input answers arbitrary bytes with an error, never a panic
//! and never a false success (property tests; issue 15 asks for cargo-fuzz targets
//! beside them): bus messages, bearer tokens, unsubscribe links, receipt files.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mindmesh_kit::auth::TokenVerifier;
use mindmesh_kit::bus::BusMessage;
use mindmesh_kit::crypto::{SecretKey, SigningKey};
use mindmesh_kit::ids::EventId;
use proptest::prelude::*;

fn verifier() -> TokenVerifier {
    let key = SigningKey::generate().unwrap();
    TokenVerifier::new(
        &key.public_key(),
        "mindmesh",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(3600),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn a_bus_message_of_arbitrary_bytes_is_refused_or_decoded_never_a_panic(
        payload in proptest::collection::vec(any::<u8>(), 0..512),
        event_type in ".{0,40}",
    ) {
        let message = BusMessage {
            id: EventId::new(),
            event_type,
            payload: payload.into(),
            traceparent: None,
        };
        let _ = mindmesh_kit::events::decode(&message);
    }

    #[test]
    fn a_bearer_token_of_arbitrary_text_or_segments_is_refused(
        text in ".{0,300}",
        header in proptest::collection::vec(any::<u8>(), 0..80),
        claims in proptest::collection::vec(any::<u8>(), 0..200),
        signature in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let verifier = verifier();
        prop_assert!(verifier.verify(&text).is_err());
        let segments = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims),
            URL_SAFE_NO_PAD.encode(signature)
        );
        prop_assert!(verifier.verify(&segments).is_err());
        let json_claims = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":{text:?},"iss":"mindmesh","exp":9999999999,"iat":1}}"#)),
            URL_SAFE_NO_PAD.encode([0u8; 64])
        );
        prop_assert!(verifier.verify(&json_claims).is_err());
    }

    #[test]
    fn an_unsubscribe_token_of_arbitrary_text_or_bytes_is_refused(
        text in ".{0,700}",
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let tokens = mindmesh_dsar::unsubscribe::Tokens::new(
            &SecretKey::generate().unwrap(),
            chrono::Duration::days(30),
        )
        .unwrap();
        let now = chrono::Utc::now();
        prop_assert!(tokens.open(&text, now).is_err());
        prop_assert!(tokens.open(&URL_SAFE_NO_PAD.encode(&bytes), now).is_err());
    }

    #[test]
    fn a_receipt_file_of_arbitrary_bytes_is_refused_or_checked_never_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        if let Ok(file) =
            serde_json::from_slice::<mindmesh_retention::receipts::ReceiptFile>(&bytes)
        {
            let found = mindmesh_retention::receipts::verify(&file, &[7u8; 32]);
            prop_assert!(!found.signature_valid);
        }
    }
}
