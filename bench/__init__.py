"""`make bench` (`python -m bench`): throughput and latency of the durable node executor.

It starts its own Temporal dev server (as `make run` and the tests start it), Redis, an LLM
server, workers and ingresses (as real processes, configured by environment variables like the
tests do), then measures:

1. the bare Temporal ceiling: a workflow with our tool node's activity plan (3 no-op activities
   and the node-deadline timer), started directly by a client;
2. ours end to end: XADD on the work stream → result event on `node.completed`, for tool, llm
   and agent (k iterations) nodes; and again with `LOCAL_STEPS=false` on the ingress (every step
   a regular activity, as before 0.2);
3. the same steps called in-process without Temporal or the stream (the durability tax);
4. tool nodes with 2 worker processes, and with scratch experiments (monkeypatches applied only
   in bench worker processes) that measure what a core change would buy;
5. many agent loops waiting on a slow LLM on one worker: how many are in flight, at what RSS;
6. one long agent loop (100 rounds, ~800 KB conversation): history bytes per model call,
   external storage, billed tokens, as shipped and before transcripts (bench/long_loop.py;
   alone: `python -m bench --only long-loop`);
7. the peer row: our agent node (2 model calls + 1 tool call) beside pydantic-ai's Temporal
   agent (`TemporalDurability`) on the same LLM server and dev server: throughput, p50/p95, CPU,
   history events and bytes, Redis commands per node (bench/peer.py, bench/peer_phase.py;
   alone: `python -m bench --only peer`);
8. for reference, a stock dev server without `history.transferProcessorMaxPollRPS=1000`.

Figures go to stdout (a table) and to `test-artifacts/bench-results.json`.
See docs/performance.md.
"""
