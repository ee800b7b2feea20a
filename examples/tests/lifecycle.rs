//! The library's services in-process, over a real loopback socket: the
//! chain VM's block lifecycle and its refusals, and warp signatures checked
//! with ed25519-dalek directly.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use zap::transport::{Limits, Listener, Url};
use zap::{Channel, Code, Router, Server};
use zap_examples::chain::{self, ChainVm, Header, block_id};
use zap_examples::signer::{Ed25519Signer, signing_message};
use zap_examples::{vm, warp};

/// Serves both services on one router; a channel to them.
async fn serve() -> Channel {
    let router = Router::new()
        .add_service(vm::VMServer::new(ChainVm::new()))
        .unwrap()
        .add_service(warp::SignerServer::new(Ed25519Signer::from_seed([7; 32])))
        .unwrap();
    let url = Url::parse("zap://127.0.0.1:0").unwrap();
    let listener = Listener::bind(&url, None, Limits::default()).await.unwrap();
    let url = listener.local_url();
    tokio::spawn(Server::builder().serve(listener, router));
    Channel::builder(url).connect_lazy()
}

/// A VM initialized with `payload`-byte blocks, in normal operation; the
/// genesis block.
async fn running_vm(payload: u64) -> (vm::VMClient, vm::InitializeResponse) {
    let vm = vm::VMClient::new(serve().await);
    let genesis = vm
        .initialize(vm::InitializeRequest {
            network_id: 5,
            genesis_bytes: Bytes::from_static(b"genesis"),
            config_bytes: chain::config_bytes(payload),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    vm.set_state(vm::SetStateRequest {
        state: vm::State::NORMAL_OP,
    })
    .await
    .unwrap();
    (vm, genesis)
}

/// Asks the VM to build a block.
async fn build(vm: &vm::VMClient) -> vm::BlockResponse {
    vm.build_block(vm::BuildBlockRequest::default())
        .await
        .unwrap()
        .into_inner()
}

/// Build → parse → verify → prefer → accept; the built block.
async fn advance(vm: &vm::VMClient) -> vm::BlockResponse {
    let built = build(vm).await;
    let parsed = vm
        .parse_block(vm::ParseBlockRequest {
            bytes: built.bytes.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(parsed, built);
    let verified = vm
        .block_verify(vm::BlockVerifyRequest {
            bytes: built.bytes.clone(),
            p_chain_height: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verified.timestamp, built.timestamp);
    vm.set_preference(vm::SetPreferenceRequest {
        id: built.id.clone(),
    })
    .await
    .unwrap();
    vm.block_accept(vm::BlockAcceptRequest {
        id: built.id.clone(),
    })
    .await
    .unwrap();
    built
}

async fn verify(vm: &vm::VMClient, header: Header) -> Result<i64, zap::Status> {
    vm.block_verify(vm::BlockVerifyRequest {
        bytes: Bytes::from(header.encode(b"payload")),
        p_chain_height: None,
    })
    .await
    .map(|r| r.into_inner().timestamp)
}

#[tokio::test]
async fn blocks_go_through_their_lifecycle() {
    let (vm, genesis) = running_vm(64).await;
    assert_eq!(genesis.height, 0);
    assert_eq!(
        block_id(&genesis.bytes).as_slice(),
        genesis.last_accepted_id
    );

    let mut parent = genesis.last_accepted_id.clone();
    let mut ids = vec![parent.clone()];
    for height in 1..=4 {
        let b = advance(&vm).await;
        assert_eq!(b.height, height);
        assert_eq!(b.parent_id, parent);
        assert_eq!(b.bytes.len(), chain::HEADER_LEN + 64);
        assert_eq!(block_id(&b.bytes).as_slice(), b.id);
        parent = b.id.clone();
        ids.push(b.id);
    }
    for (h, id) in ids.iter().enumerate() {
        let r = vm
            .get_block_id_at_height(vm::GetBlockIDAtHeightRequest { height: h as u64 })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.err, vm::Error::UNSPECIFIED);
        assert_eq!(&r.blk_id, id);
    }
    let ancestors = vm
        .get_ancestors(vm::GetAncestorsRequest {
            blk_id: parent.clone(),
            max_blocks_num: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .blks_bytes;
    let got: Vec<Bytes> = ancestors
        .iter()
        .map(|b| Bytes::copy_from_slice(&block_id(b)))
        .collect();
    let want: Vec<Bytes> = ids.iter().rev().cloned().collect();
    assert_eq!(got, want, "tip first, back to genesis");

    let health = vm.health(vm::Empty {}).await.unwrap().into_inner();
    assert!(String::from_utf8_lossy(&health.details).contains("\"height\":4"));
}

#[tokio::test]
async fn unknown_heights_and_blocks_are_not_found() {
    let (vm, _) = running_vm(16).await;
    advance(&vm).await;
    let r = vm
        .get_block_id_at_height(vm::GetBlockIDAtHeightRequest { height: 2 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.err, vm::Error::NOT_FOUND);
    assert!(r.blk_id.is_empty());

    let r = vm
        .get_block(vm::GetBlockRequest {
            id: Bytes::from_static(&[1; 32]),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.err, vm::Error::NOT_FOUND);

    let e = vm
        .get_ancestors(vm::GetAncestorsRequest {
            blk_id: Bytes::from_static(&[1; 32]),
            max_blocks_num: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NOT_FOUND);
}

#[tokio::test]
async fn blocks_that_do_not_extend_the_chain_fail_to_verify() {
    let (vm, genesis) = running_vm(16).await;
    let one = advance(&vm).await;
    let one_id: [u8; 32] = one.id.as_ref().try_into().unwrap();
    let genesis_id: [u8; 32] = genesis.last_accepted_id.as_ref().try_into().unwrap();

    // A parent nobody has seen.
    let e = verify(
        &vm,
        Header {
            parent_id: [0xee; 32],
            height: 2,
            timestamp: one.timestamp,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION, "{e}");
    assert!(e.message().contains("unknown parent"), "{e}");

    // A sibling of the accepted block 1: its parent is below the tip.
    let e = verify(
        &vm,
        Header {
            parent_id: genesis_id,
            height: 1,
            timestamp: 1,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION, "{e}");

    // The right parent, the wrong height.
    let e = verify(
        &vm,
        Header {
            parent_id: one_id,
            height: 3,
            timestamp: one.timestamp,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::INVALID_ARGUMENT, "{e}");

    // Too short to be a block.
    let e = vm
        .block_verify(vm::BlockVerifyRequest {
            bytes: Bytes::from_static(b"short"),
            p_chain_height: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::INVALID_ARGUMENT, "{e}");

    // And the right one verifies, but is not accepted until asked.
    let ts = verify(
        &vm,
        Header {
            parent_id: one_id,
            height: 2,
            timestamp: one.timestamp,
        },
    )
    .await
    .unwrap();
    assert_eq!(ts, one.timestamp);
    let r = vm
        .get_block_id_at_height(vm::GetBlockIDAtHeightRequest { height: 2 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.err, vm::Error::NOT_FOUND);
}

#[tokio::test]
async fn rejected_and_unverified_blocks_cannot_be_accepted() {
    let (vm, _) = running_vm(16).await;
    let built = build(&vm).await;
    // Built but not verified.
    let e = vm
        .block_accept(vm::BlockAcceptRequest {
            id: built.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION);
    vm.block_reject(vm::BlockRejectRequest {
        id: built.id.clone(),
    })
    .await
    .unwrap();
    let e = vm
        .block_accept(vm::BlockAcceptRequest { id: built.id })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NOT_FOUND);
    // The chain goes on from the last accepted block.
    assert_eq!(advance(&vm).await.height, 1);
}

#[tokio::test]
async fn calls_follow_the_vm_state() {
    let vm = vm::VMClient::new(serve().await);
    let e = vm
        .build_block(vm::BuildBlockRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION, "{e}");

    vm.initialize(vm::InitializeRequest::default())
        .await
        .unwrap();
    let e = vm
        .initialize(vm::InitializeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION, "{e}");
    // Bootstrapping: nothing to build yet.
    let mut events = vm.wait_for_event(vm::Empty {}).await.unwrap().into_inner();
    let e = vm
        .build_block(vm::BuildBlockRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION, "{e}");

    vm.set_state(vm::SetStateRequest {
        state: vm::State::NORMAL_OP,
    })
    .await
    .unwrap();
    let event = events.message().await.unwrap().unwrap();
    assert_eq!(event.message, vm::Message::BUILD_BLOCK);

    vm.shutdown(vm::Empty {}).await.unwrap();
    assert!(
        events.message().await.unwrap().is_none(),
        "ends at shutdown"
    );
    let e = vm.version(vm::Empty {}).await;
    assert!(e.is_ok(), "version needs no running chain");
    let e = vm.health(vm::Empty {}).await.unwrap_err();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION, "{e}");
}

fn sign_request(i: u8) -> warp::SignRequest {
    warp::SignRequest {
        network_id: 1337,
        source_chain_id: Bytes::from(vec![i; 32]),
        payload: Bytes::from(format!("payload {i}")),
    }
}

#[tokio::test]
async fn warp_signatures_verify_and_tampering_is_caught() {
    let signer = warp::SignerClient::new(serve().await);
    let key = signer
        .get_public_key(warp::GetPublicKeyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(key.error, "");
    let key = VerifyingKey::from_bytes(key.public_key.as_ref().try_into().unwrap()).unwrap();
    assert_eq!(key, Ed25519Signer::from_seed([7; 32]).verifying_key());

    let req = sign_request(3);
    let resp = signer.sign(req.clone()).await.unwrap().into_inner();
    assert_eq!(resp.error, "");
    let sig = Signature::from_slice(&resp.signature).unwrap();
    let mut msg = signing_message(req.network_id, &req.source_chain_id, &req.payload);
    assert_eq!(&msg[..4], &1337u32.to_le_bytes());
    key.verify(&msg, &sig).unwrap();

    // Any changed byte breaks it: payload, chain, network.
    let last = msg.len() - 1;
    msg[last] ^= 1;
    assert!(key.verify(&msg, &sig).is_err());
    let other_chain = signing_message(req.network_id, &[4; 32], &req.payload);
    assert!(key.verify(&other_chain, &sig).is_err());
    let other_net = signing_message(1, &req.source_chain_id, &req.payload);
    assert!(key.verify(&other_net, &sig).is_err());
}

#[tokio::test]
async fn batches_sign_each_item_and_refuse_bad_ones_in_band() {
    let signer = warp::SignerClient::new(serve().await);
    let key = Ed25519Signer::from_seed([7; 32]).verifying_key();
    let mut requests: Vec<_> = (0..10).map(sign_request).collect();
    requests[4].source_chain_id = Bytes::from_static(&[0; 33]);
    let responses = signer
        .batch_sign(warp::BatchSignRequest {
            requests: requests.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .responses;
    assert_eq!(responses.len(), 10);
    for (i, (req, resp)) in requests.iter().zip(&responses).enumerate() {
        if i == 4 {
            assert_eq!(resp.error, "source_chain_id must be 32 bytes, got 33");
            assert!(resp.signature.is_empty());
            continue;
        }
        assert_eq!(resp.error, "", "item {i}");
        let msg = signing_message(req.network_id, &req.source_chain_id, &req.payload);
        key.verify(&msg, &Signature::from_slice(&resp.signature).unwrap())
            .unwrap();
    }

    // An empty batch is fine.
    let empty = signer
        .batch_sign(warp::BatchSignRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(empty.responses.is_empty());
}
