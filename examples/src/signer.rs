//! An ed25519 warp signer served as the `warp.Signer` service of
//! `proto/warp.proto`.
//!
//! The signed bytes are [`signing_message`]: `network_id` (little-endian
//! `u32`) ‖ `source_chain_id` (32 bytes) ‖ `payload`. A request whose
//! `source_chain_id` is not 32 bytes gets its error in band (`error` set,
//! empty `signature`); in a batch that affects only its own item.

use bytes::Bytes;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use rand_core::OsRng;
use zap::{Request, Response, Status};

use crate::warp;

/// Most requests one `BatchSign` call may carry.
pub const MAX_BATCH: usize = 100_000;

/// The bytes a warp signature covers.
pub fn signing_message(network_id: u32, source_chain_id: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(4 + source_chain_id.len() + payload.len());
    msg.extend_from_slice(&network_id.to_le_bytes());
    msg.extend_from_slice(source_chain_id);
    msg.extend_from_slice(payload);
    msg
}

/// Checks `signature` over the request's message with `key`.
pub fn verify(
    key: &VerifyingKey,
    request: &warp::SignRequest,
    signature: &[u8],
) -> Result<(), String> {
    let signature =
        Signature::from_slice(signature).map_err(|e| format!("malformed signature: {e}"))?;
    let msg = signing_message(
        request.network_id,
        &request.source_chain_id,
        &request.payload,
    );
    key.verify(&msg, &signature)
        .map_err(|e| format!("bad signature: {e}"))
}

/// The signer: one ed25519 key. Serve it with
/// `warp::SignerServer::new(Ed25519Signer::generate())`.
#[derive(Debug)]
pub struct Ed25519Signer {
    key: SigningKey,
}

impl Ed25519Signer {
    /// A signer with a fresh key from the operating system's RNG.
    pub fn generate() -> Self {
        Self::new(SigningKey::generate(&mut OsRng))
    }

    /// A signer with the key derived from `seed` (reproducible runs).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self::new(SigningKey::from_bytes(&seed))
    }

    /// A signer with `key`.
    pub fn new(key: SigningKey) -> Self {
        Ed25519Signer { key }
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs one request; problems are reported in band.
    pub fn sign_one(&self, req: &warp::SignRequest) -> warp::SignResponse {
        if req.source_chain_id.len() != 32 {
            return warp::SignResponse {
                signature: Bytes::new(),
                error: format!(
                    "source_chain_id must be 32 bytes, got {}",
                    req.source_chain_id.len()
                )
                .into(),
            };
        }
        let msg = signing_message(req.network_id, &req.source_chain_id, &req.payload);
        warp::SignResponse {
            signature: Bytes::copy_from_slice(&self.key.sign(&msg).to_bytes()),
            error: "".into(),
        }
    }
}

impl warp::Signer for Ed25519Signer {
    async fn sign(
        &self,
        request: Request<warp::SignRequest>,
    ) -> Result<Response<warp::SignResponse>, Status> {
        Ok(Response::new(self.sign_one(request.get_ref())))
    }

    async fn get_public_key(
        &self,
        _: Request<warp::GetPublicKeyRequest>,
    ) -> Result<Response<warp::GetPublicKeyResponse>, Status> {
        Ok(Response::new(warp::GetPublicKeyResponse {
            public_key: Bytes::copy_from_slice(self.verifying_key().as_bytes()),
            error: "".into(),
        }))
    }

    async fn batch_sign(
        &self,
        request: Request<warp::BatchSignRequest>,
    ) -> Result<Response<warp::BatchSignResponse>, Status> {
        let requests = &request.get_ref().requests;
        if requests.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "{} requests in one batch, at most {MAX_BATCH}",
                requests.len()
            )));
        }
        let responses = requests.iter().map(|r| self.sign_one(r)).collect();
        Ok(Response::new(warp::BatchSignResponse { responses }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn signs_and_rejects_in_band() {
        let signer = Ed25519Signer::from_seed([9; 32]);
        let req = warp::SignRequest {
            network_id: 1,
            source_chain_id: Bytes::from_static(&[3; 32]),
            payload: Bytes::from_static(b"hello"),
        };
        let resp = signer.sign_one(&req);
        assert_eq!(resp.error, "");
        verify(&signer.verifying_key(), &req, &resp.signature).unwrap();

        let bad = warp::SignRequest {
            source_chain_id: Bytes::from_static(&[3; 31]),
            ..req
        };
        let resp = signer.sign_one(&bad);
        assert!(resp.signature.is_empty());
        assert_eq!(resp.error, "source_chain_id must be 32 bytes, got 31");
    }
}
