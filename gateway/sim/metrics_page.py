"""The simulator's vLLM-style Prometheus page: load gauges from its real in-flight requests (or forced)."""

from __future__ import annotations

from gateway.sim.state import SimState


def load_figures(state: SimState) -> tuple[int, int, float]:
    """(waiting, running, KV-cache use 0..1): the batch takes `max_running` in-flight requests, the rest
    wait, and the cache fills with the batch; a forced knob replaces its figure."""
    knobs = state.knobs
    cap = knobs.max_running
    in_flight = state.stats.in_flight
    running = knobs.force_running if knobs.force_running is not None else min(in_flight, cap)
    waiting = knobs.force_waiting if knobs.force_waiting is not None else max(0, in_flight - cap)
    kv = knobs.force_kv_cache if knobs.force_kv_cache is not None else min(1.0, running / cap)
    return waiting, running, kv


def metrics_page(state: SimState) -> str:
    """The page as vLLM's OpenAI server publishes it (`vllm:` gauges labelled by model_name), with a
    counter and a histogram around them, as on a real page, for the scraper to skip."""
    waiting, running, kv = load_figures(state)
    model = (state.profile.models or [state.profile.name])[0].replace("\\", "\\\\").replace('"', '\\"')
    label = f'{{engine="0",model_name="{model}"}}'
    total = state.stats.total_requests
    return (
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
        "# TYPE vllm:num_requests_running gauge\n"
        f"vllm:num_requests_running{label} {float(running)}\n"
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
        "# TYPE vllm:num_requests_waiting gauge\n"
        f"vllm:num_requests_waiting{label} {float(waiting)}\n"
        "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        f"vllm:kv_cache_usage_perc{label} {kv}\n"
        "# HELP vllm:request_success_total Count of successfully processed requests.\n"
        "# TYPE vllm:request_success_total counter\n"
        f'vllm:request_success_total{{finished_reason="stop",model_name="{model}"}} {float(total)}\n'
        "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.\n"
        "# TYPE vllm:time_to_first_token_seconds histogram\n"
        f'vllm:time_to_first_token_seconds_bucket{{le="0.1",model_name="{model}"}} 0.0\n'
        f'vllm:time_to_first_token_seconds_bucket{{le="+Inf",model_name="{model}"}} 0.0\n'
        f'vllm:time_to_first_token_seconds_count{{model_name="{model}"}} 0.0\n'
        f'vllm:time_to_first_token_seconds_sum{{model_name="{model}"}} 0.0\n'
    )
