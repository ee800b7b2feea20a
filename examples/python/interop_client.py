"""A real gRPC client (Python grpcio) against zap's gRPC fallback (issue #5).

Run by examples/tests/interop.rs, which starts the one-port server (the
interop TestService and the vm.proto VM) and drives this script:

    python interop_client.py --port PORT --proto-dir ../proto --out DIR

The stubs are generated from the .proto files at run time with grpcio-tools.
Each case checks its own results and prints one JSON line per observation,
``{"case": name, "seen": text}``; the test compares the interop cases'
observations with the same cases run over ZAP. The two cancellation cases
also ask the test whether the *server* saw the cancellation: the script
prints ``{"begin": name}`` before the call and ``{"sync": name}`` after
cancelling, each time waiting for the test to answer ``ok`` on stdin. Before
cancel_after_begin cancels, ``{"started": name}`` waits the same way until
the server's handler has started.

Any failed check raises, so the script exits non-zero with a traceback.
"""

import argparse
import hashlib
import importlib
import json
import os
import struct
import sys
import threading

import grpc
from grpc_tools import protoc

SPECIAL = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
ECHO_INITIAL = ("x-grpc-test-echo-initial", "test_initial_metadata_value")
ECHO_TRAILING = ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab")


def emit(**line):
    print(json.dumps(line), flush=True)


def note(case, seen):
    emit(case=case, seen=seen)


def ask(what, case):
    """Asks the test to confirm the server saw `what` of `case`."""
    emit(**{what: case})
    answer = sys.stdin.readline().strip()
    assert answer == "ok", f"{case}: the test answered {answer!r} to {what}"


def server_saw_cancelled(case):
    ask("sync", case)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def status_of(err):
    return f"{err.code().name}: {err.details()}"


def expect_error(call, *args, **kwargs):
    """The RpcError `call` must end with."""
    try:
        result = call(*args, **kwargs)
    except grpc.RpcError as err:
        return err
    raise AssertionError(f"expected an error, got {result!r}")


class Pipe:
    """A request iterator fed by hand (grpcio drains it on its own thread)."""

    def __init__(self):
        self._values = []
        self._open = True
        self._cond = threading.Condition()

    def __iter__(self):
        return self

    def __next__(self):
        with self._cond:
            while not self._values and self._open:
                self._cond.wait()
            if self._values:
                return self._values.pop(0)
            raise StopIteration()

    def add(self, value):
        with self._cond:
            self._values.append(value)
            self._cond.notify()

    def close(self):
        with self._cond:
            self._open = False
            self._cond.notify()


def generate(proto_dir, out):
    os.makedirs(out, exist_ok=True)
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "interop.proto",
            "vm.proto",
        ]
    )
    check(code == 0, f"grpc_tools.protoc failed ({code})")
    sys.path.insert(0, out)
    return [
        importlib.import_module(m)
        for m in ("interop_pb2", "interop_pb2_grpc", "vm_pb2", "vm_pb2_grpc")
    ]


def interop_cases(channel, pb, pb_grpc):
    stub = pb_grpc.TestServiceStub(channel)

    def zeros(n):
        return pb.Payload(type=pb.COMPRESSABLE, body=bytes(n))

    def params(sizes):
        return [pb.ResponseParameters(size=s) for s in sizes]

    r = stub.EmptyCall(pb.Empty())
    check(r == pb.Empty(), "empty_unary")
    note("empty_unary", "OK")

    r = stub.UnaryCall(pb.SimpleRequest(response_size=314_159, payload=zeros(271_828)))
    check(len(r.payload.body) == 314_159, "large_unary")
    note("large_unary", str(len(r.payload.body)))

    sizes = [27_182, 8, 1_828, 45_904]
    r = stub.StreamingInputCall(iter(pb.StreamingInputCallRequest(payload=zeros(n)) for n in sizes))
    check(r.aggregated_payload_size == 74_922, "client_streaming")
    note("client_streaming", str(r.aggregated_payload_size))

    sizes = [31_415, 9, 2_653, 58_979]
    got = [
        len(m.payload.body)
        for m in stub.StreamingOutputCall(
            pb.StreamingOutputCallRequest(response_parameters=params(sizes))
        )
    ]
    check(got == sizes, f"server_streaming: {got}")
    note("server_streaming", str(got))

    pipe = Pipe()
    responses = stub.FullDuplexCall(pipe)
    got = []
    for req, resp in [(27_182, 31_415), (8, 9), (1_828, 2_653), (45_904, 58_979)]:
        pipe.add(
            pb.StreamingOutputCallRequest(response_parameters=params([resp]), payload=zeros(req))
        )
        got.append(len(next(responses).payload.body))
    pipe.close()
    check(next(responses, None) is None, "ping_pong: no response after the last")
    check(got == [31_415, 9, 2_653, 58_979], f"ping_pong: {got}")
    note("ping_pong", str(got))

    got = list(stub.FullDuplexCall(iter([])))
    check(got == [], "empty_stream")
    note("empty_stream", "0 responses")

    metadata = [ECHO_INITIAL, ECHO_TRAILING]
    r, call = stub.UnaryCall.with_call(
        pb.SimpleRequest(response_size=314_159, payload=zeros(271_828)), metadata=metadata
    )
    check(len(r.payload.body) == 314_159, "custom_metadata payload")
    initial = dict(call.initial_metadata()).get(ECHO_INITIAL[0])
    trailing = dict(call.trailing_metadata()).get(ECHO_TRAILING[0])
    check(initial == ECHO_INITIAL[1], f"custom_metadata initial: {initial!r}")
    check(trailing == ECHO_TRAILING[1], f"custom_metadata trailing: {trailing!r}")
    responses = stub.FullDuplexCall(
        iter(
            [
                pb.StreamingOutputCallRequest(
                    response_parameters=params([314_159]), payload=zeros(271_828)
                )
            ]
        ),
        metadata=metadata,
    )
    check(dict(responses.initial_metadata()).get(ECHO_INITIAL[0]) == ECHO_INITIAL[1], "bidi initial")
    check([len(m.payload.body) for m in responses] == [314_159], "bidi payload")
    check(dict(responses.trailing_metadata()).get(ECHO_TRAILING[0]) == ECHO_TRAILING[1], "bidi trailing")
    note("custom_metadata", f"{initial} {trailing.hex()}")

    for case, message in [
        ("status_code_and_message", "test status message"),
        ("special_status_message", SPECIAL),
    ]:
        status = pb.EchoStatus(code=2, message=message)
        unary = status_of(expect_error(stub.UnaryCall, pb.SimpleRequest(response_status=status)))
        check(unary == f"UNKNOWN: {message}", f"{case}: {unary!r}")
        responses = stub.FullDuplexCall(iter([pb.StreamingOutputCallRequest(response_status=status)]))
        bidi = status_of(expect_error(list, responses))
        check(bidi == unary, f"{case} (bidi): {bidi!r}")
        note(case, unary)

    err = expect_error(stub.UnimplementedCall, pb.Empty())
    check(err.code() == grpc.StatusCode.UNIMPLEMENTED, f"unimplemented_method: {err}")
    note("unimplemented_method", err.code().name)

    other = pb_grpc.UnimplementedServiceStub(channel)
    err = expect_error(other.UnimplementedCall, pb.Empty())
    check(err.code() == grpc.StatusCode.UNIMPLEMENTED, f"unimplemented_service: {err}")
    note("unimplemented_service", err.code().name)

    # cancel_after_begin: the call has begun (the test waits until the
    # server's handler started) with no message sent.
    ask("begin", "cancel_after_begin")
    pipe = Pipe()
    future = stub.StreamingInputCall.future(pipe)
    ask("started", "cancel_after_begin")
    check(not future.done(), "cancel_after_begin: the call cannot end on its own")
    future.cancel()
    pipe.close()
    check(future.cancelled(), "cancel_after_begin: not cancelled")
    check(future.code() == grpc.StatusCode.CANCELLED, f"cancel_after_begin: {future.code()}")
    server_saw_cancelled("cancel_after_begin")
    note("cancel_after_begin", "server saw CANCELLED")

    ask("begin", "cancel_after_first_response")
    pipe = Pipe()
    responses = stub.FullDuplexCall(pipe)
    pipe.add(
        pb.StreamingOutputCallRequest(response_parameters=params([31_415]), payload=zeros(27_182))
    )
    check(len(next(responses).payload.body) == 31_415, "cancel_after_first_response: pong")
    responses.cancel()
    pipe.close()
    check(responses.code() == grpc.StatusCode.CANCELLED, f"cancel_after_first_response: {responses.code()}")
    server_saw_cancelled("cancel_after_first_response")
    note("cancel_after_first_response", "server saw CANCELLED")

    pipe = Pipe()
    responses = stub.FullDuplexCall(pipe, timeout=0.001)
    pipe.add(
        pb.StreamingOutputCallRequest(
            response_parameters=[pb.ResponseParameters(size=31_415, interval_us=1_000_000)],
            payload=zeros(27_182),
        )
    )
    err = expect_error(next, responses)
    pipe.close()
    check(err.code() == grpc.StatusCode.DEADLINE_EXCEEDED, f"timeout_on_sleeping_server: {err}")
    note("timeout_on_sleeping_server", err.code().name)


def header(parent_id, height, timestamp):
    return parent_id + struct.pack("<Qq", height, timestamp)


def vm_calls(channel, pb, pb_grpc):
    """The vm.proto service: a chain driven as a node drives its VM."""
    vm = pb_grpc.VMStub(channel)

    def fails(code, call, *args):
        err = expect_error(call, *args)
        check(err.code() == code, f"expected {code.name}, got {status_of(err)}")
        return status_of(err)

    note("vm.build_block_before_initialize", fails(grpc.StatusCode.FAILED_PRECONDITION, vm.BuildBlock, pb.BuildBlockRequest()))

    payload_size = 64
    init = vm.Initialize(
        pb.InitializeRequest(
            network_id=7,
            chain_id=bytes(32),
            genesis_bytes=b"genesis",
            config_bytes=struct.pack("<Q", payload_size),
        )
    )
    genesis = header(bytes(32), 0, 0) + b"genesis"
    check(init.bytes == genesis, "initialize: genesis bytes")
    check(init.last_accepted_id == hashlib.sha256(genesis).digest(), "initialize: genesis id")
    check(init.height == 0 and init.last_accepted_parent_id == bytes(32), "initialize: height 0")
    note("vm.initialize", f"height {init.height}")
    note("vm.initialize_twice", fails(grpc.StatusCode.FAILED_PRECONDITION, vm.Initialize, pb.InitializeRequest()))

    state = vm.SetState(pb.SetStateRequest(state=pb.STATE_NORMAL_OP))
    check(state.last_accepted_id == init.last_accepted_id, "set_state: last accepted")
    note("vm.set_state", pb.State.Name(pb.STATE_NORMAL_OP))

    events = vm.WaitForEvent(pb.Empty())
    event = next(events)
    events.cancel()
    check(event.message == pb.MESSAGE_BUILD_BLOCK, f"wait_for_event: {event}")
    note("vm.wait_for_event", pb.Message.Name(event.message))

    parent = init.last_accepted_id
    blocks = []
    for height in (1, 2):
        b = vm.BuildBlock(pb.BuildBlockRequest())
        check(b.height == height and b.parent_id == parent, f"build_block {height}: {b.height}")
        check(len(b.bytes) == 48 + payload_size, "build_block: size")
        check(b.id == hashlib.sha256(b.bytes).digest(), "build_block: id is the bytes' SHA-256")
        check(b.bytes[:48] == header(parent, height, b.timestamp), "build_block: header")
        check(b.err == pb.ERROR_UNSPECIFIED, "build_block: in-band error")
        verified = vm.BlockVerify(pb.BlockVerifyRequest(bytes=b.bytes))
        check(verified.timestamp == b.timestamp, "block_verify: timestamp")
        vm.SetPreference(pb.SetPreferenceRequest(id=b.id))
        vm.BlockAccept(pb.BlockAcceptRequest(id=b.id))
        blocks.append(b)
        parent = b.id
    note("vm.build_verify_accept", f"heights {[b.height for b in blocks]}")

    at = vm.GetBlockIDAtHeight(pb.GetBlockIDAtHeightRequest(height=2))
    check(at.blk_id == blocks[1].id and at.err == pb.ERROR_UNSPECIFIED, "get_block_id_at_height 2")
    at = vm.GetBlockIDAtHeight(pb.GetBlockIDAtHeightRequest(height=9))
    check(at.blk_id == b"" and at.err == pb.ERROR_NOT_FOUND, "get_block_id_at_height 9")
    note("vm.get_block_id_at_height", pb.Error.Name(at.err))

    got = vm.GetBlock(pb.GetBlockRequest(id=blocks[0].id))
    check((got.bytes, got.height) == (blocks[0].bytes, 1), "get_block")
    got = vm.GetBlock(pb.GetBlockRequest(id=bytes(32)))
    check(got.err == pb.ERROR_NOT_FOUND, "get_block: unknown id answers NOT_FOUND in band")
    note("vm.get_block_bad_id", fails(grpc.StatusCode.INVALID_ARGUMENT, vm.GetBlock, pb.GetBlockRequest(id=bytes(31))))

    parsed = vm.ParseBlock(pb.ParseBlockRequest(bytes=blocks[1].bytes))
    check(parsed.id == blocks[1].id and parsed.height == 2, "parse_block: known block")
    note("vm.parse_block_short", fails(grpc.StatusCode.INVALID_ARGUMENT, vm.ParseBlock, pb.ParseBlockRequest(bytes=b"short")))

    ancestors = vm.GetAncestors(pb.GetAncestorsRequest(blk_id=blocks[1].id, max_blocks_num=10))
    check(list(ancestors.blks_bytes) == [blocks[1].bytes, blocks[0].bytes, genesis], "get_ancestors")
    note("vm.get_ancestors", f"{len(ancestors.blks_bytes)} blocks")

    batch = vm.BatchedParseBlock(pb.BatchedParseBlockRequest(request=[b.bytes for b in blocks]))
    check([r.id for r in batch.response] == [b.id for b in blocks], "batched_parse_block")
    note("vm.batched_parse_block_bad_item", fails(
        grpc.StatusCode.INVALID_ARGUMENT,
        vm.BatchedParseBlock,
        pb.BatchedParseBlockRequest(request=[blocks[0].bytes, b"x"]),
    ))

    health = json.loads(vm.Health(pb.Empty()).details)
    check(health["healthy"] and health["height"] == 2 and health["network_id"] == 7, f"health: {health}")
    note("vm.health", f"height {health['height']}")
    version = vm.Version(pb.Empty()).version
    check(version.startswith("zap-examples chain VM v"), f"version: {version!r}")
    note("vm.version", "zap-examples chain VM")

    vm.Shutdown(pb.Empty())
    note("vm.build_block_after_shutdown", fails(grpc.StatusCode.FAILED_PRECONDITION, vm.BuildBlock, pb.BuildBlockRequest()))


def main():
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--port", type=int, required=True)
    args.add_argument("--proto-dir", required=True)
    args.add_argument("--out", required=True, help="where the generated stubs go")
    args = args.parse_args()
    pb, pb_grpc, vm_pb, vm_pb_grpc = generate(args.proto_dir, args.out)
    with grpc.insecure_channel(f"127.0.0.1:{args.port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        interop_cases(channel, pb, pb_grpc)
        vm_calls(channel, vm_pb, vm_pb_grpc)
    emit(done=True)


if __name__ == "__main__":
    main()
