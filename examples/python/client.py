"""A pipeserve gRPC client: Tokenizer.Encode, then Coordinator.Generate (tokens printed as they
stream in) and Coordinator.Process (the same generation, answered once).

    python3 client.py --prompt "Once upon a time" --max-new-tokens 24

--jsonl prints one JSON object per line instead (encoded, token..., summary, processed), for scripts.
"""

import argparse
import json
import os
import sys
import uuid

import grpc

import pipeserve_protos

# The addresses of config.json at the repository root.
DEFAULT_TOKENIZER = "localhost:50050"
DEFAULT_COORDINATOR = "localhost:50060"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default=DEFAULT_TOKENIZER, help=f"host:port of the tokenizer (default {DEFAULT_TOKENIZER})")
    parser.add_argument("--coordinator", default=DEFAULT_COORDINATOR, help=f"host:port of the coordinator (default {DEFAULT_COORDINATOR})")
    parser.add_argument("--prompt", default="Once upon a time", help="the text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 (the default) is greedy")
    parser.add_argument("--seed", type=int, default=0, help="for sampling at a temperature above 0")
    parser.add_argument("--timeout", type=float, default=60.0, help="deadline of each call, in seconds")
    parser.add_argument("--jsonl", action="store_true", help="print JSON lines instead of text")
    return parser.parse_args(argv)


def call_metadata(request_id):
    """The request id every service logs; and the cluster secret, when the cluster has one (CLUSTER_SECRET, as the services read it)."""
    metadata = [("x-request-id", request_id)]
    secret = os.environ.get("CLUSTER_SECRET")
    if secret:
        metadata.append(("authorization", f"Bearer {secret}"))
    return metadata


def summary_fields(summary):
    return {
        "token_ids": list(summary.token_ids),
        "text": summary.text,
        "finish_reason": summary.finish_reason,
        "prompt_tokens": summary.prompt_tokens,
        "generated_tokens": summary.generated_tokens,
        "total_ms": summary.timings.total_ms,
        "nodes": [{"node_id": n.node_id, "stage": n.stage, "forward_ms": n.forward_ms, "steps": n.steps} for n in summary.timings.nodes],
    }


class TextOutput:
    """For people: the generated text as it streams, then one line about each answer."""

    def encoded(self, prompt, ids):
        print(f"prompt: {prompt!r} ({len(ids)} tokens: {' '.join(map(str, ids))})\n")
        print("Generate (streamed):")

    def token(self, token):
        print(token.text, end="", flush=True)

    def summary(self, summary):
        print(f"\n[{summary.generated_tokens} tokens, finish_reason={summary.finish_reason}, ids: {' '.join(map(str, summary.token_ids))}]\n")

    def processed(self, processed):
        nodes = ", ".join(f"{n.node_id} (stage {n.stage}) {n.forward_ms:.1f} ms" for n in processed.timings.nodes)
        print(f"Process:\n{processed.text}")
        print(f"[{processed.generated_tokens} tokens, finish_reason={processed.finish_reason}, {processed.timings.total_ms:.1f} ms: {nodes}]")


class JsonLinesOutput:
    """For scripts: one JSON object per line, {kind: fields}, each flushed as it happens."""

    def _line(self, kind, fields):
        print(json.dumps({kind: fields}), flush=True)

    def encoded(self, prompt, ids):
        self._line("encoded", {"token_ids": ids})

    def token(self, token):
        self._line("token", {"index": token.index, "token_id": token.token_id, "text": token.text, "logprob": token.logprob})

    def summary(self, summary):
        self._line("summary", summary_fields(summary))

    def processed(self, processed):
        self._line("processed", summary_fields(processed))


def run(args, pb, output):
    request_id = f"python-{uuid.uuid4().hex[:12]}"
    metadata = call_metadata(request_id)
    with grpc.insecure_channel(args.tokenizer) as tokenizer_channel, grpc.insecure_channel(args.coordinator) as coordinator_channel:
        tokenizer = pb.tokenizer_pb2_grpc.TokenizerStub(tokenizer_channel)
        coordinator = pb.coordinator_pb2_grpc.CoordinatorStub(coordinator_channel)

        encoded = tokenizer.Encode(pb.tokenizer_pb2.EncodeRequest(text=args.prompt), timeout=args.timeout, metadata=metadata)
        prompt_ids = list(encoded.token_ids)
        output.encoded(args.prompt, prompt_ids)

        # Each field of GenerationParameters may be left unset (it then takes the service's default).
        parameters = pb.coordinator_pb2.GenerationParameters(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)
        request = pb.coordinator_pb2.GenerateRequest(request_id=request_id, prompt_token_ids=prompt_ids, parameters=parameters)

        # One TokenEvent per generated token, then one GenerationSummary.
        for event in coordinator.Generate(request, timeout=args.timeout, metadata=metadata):
            if event.WhichOneof("event") == "token":
                output.token(event.token)
            else:
                output.summary(event.summary)

        output.processed(coordinator.Process(request, timeout=args.timeout, metadata=metadata))


def main(argv):
    args = parse_args(argv)
    pb = pipeserve_protos.load()
    try:
        run(args, pb, JsonLinesOutput() if args.jsonl else TextOutput())
    except grpc.RpcError as error:
        print(f"\nerror: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
