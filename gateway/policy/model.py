"""The policy schema (design.md §3): strict pydantic models, unknown keys rejected."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gateway.policy.quantization import Quantization, lower
from gateway.policy.urls import check_base_url

Objective = Literal["cheapest", "fastest", "balanced", "greenest"]
ModelType = Literal["chat", "embedding"]
# Case-insensitive in YAML (FP8 or fp8); the vocabulary and its order are in gateway/policy/quantization.py.
Precision = Annotated[Quantization, BeforeValidator(lower)]
PrecisionOrUnknown = Annotated[Quantization | Literal["unknown"], BeforeValidator(lower)]
# Google Cloud project ids (6-30 chars: lowercase letters, digits, hyphens; a letter first; optionally
# domain-scoped, `example.com:my-project`) and Vertex AI locations (`us-central1`, `europe-west4`, `global`).
_GCP_PROJECT = r"^([a-z][a-z0-9.-]{0,61}[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$"
_GCP_LOCATION = r"^(global|[a-z]{2,}-[a-z]+[0-9]{1,2})$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelEntry(_Strict):
    """One logical model served by a backend."""

    id: str = Field(min_length=1, description="the provider's own model id")
    input_price: float = Field(default=0.0, ge=0, description="USD per 1M input tokens")
    output_price: float = Field(default=0.0, ge=0, description="USD per 1M output tokens")
    context_window: int | None = Field(default=None, gt=0)
    # Absent: the model serves whichever endpoint the client calls and the upstream decides; given, it
    # restricts the model to that endpoint (a chat call on an embedding model is a 400, and vice versa).
    type: ModelType | None = None
    # Declared expectations, used to rank until live telemetry exists for this backend.
    ttft_ms: float | None = Field(default=None, gt=0)
    tokens_per_s: float | None = Field(default=None, gt=0)
    quantization: Precision | None = Field(default=None, description="serving precision; absent: undeclared")


class Backend(_Strict):
    provider: str = Field(min_length=1, description="adapter kind: openai, bedrock, sagemaker, vertex, ...")
    base_url: Annotated[str, AfterValidator(check_base_url)] | None = Field(
        default=None,
        description="http(s) URL of the API root, e.g. .../v1; no credentials, query or fragment. Required "
        "for openai; for bedrock and sagemaker it replaces the region's AWS endpoint (VPC endpoint, tests); "
        "for vertex, scheme and host only (Private Service Connect, tests)",
    )
    region: str | None = Field(
        default=None,
        pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$",
        description="AWS region of a bedrock or sagemaker backend, e.g. us-east-1",
    )
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    hardware: str | None = None
    joules_per_token: float | None = Field(default=None, gt=0, description="overrides the hardware catalog")
    headers: dict[str, str] = Field(default_factory=dict, description="static headers sent upstream")
    models: dict[str, ModelEntry] = Field(min_length=1)
    # OpenAI-compatible hosts and self-hosted servers (docs/fleet.md): the host's dialect (rate-limit headers,
    # error shape, quirks), and the Prometheus page whose queue and KV-cache gauges scoring reads.
    dialect: str | None = Field(
        default=None, description="openai (default), groq, together, vllm, tgi, nim..."
    )
    metrics_url: Annotated[str, AfterValidator(check_base_url)] | None = None
    metrics_interval_s: float = Field(default=5.0, ge=0.5, le=300, description="between two scrapes")
    # provider: vertex (gateway/providers/google/): where its OpenAI-compatible endpoint is,
    # https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/endpoints/{endpoint}
    project: str | None = Field(default=None, pattern=_GCP_PROJECT, description="Google Cloud project id")
    location: str | None = Field(default=None, pattern=_GCP_LOCATION, description="e.g. us-central1, global")
    endpoint: str | None = Field(
        default=None,
        pattern=r"^(openapi|[1-9][0-9]{0,18})$",
        description="openapi (default) or an endpoint id",
    )

    @model_validator(mode="after")
    def _fits_provider(self) -> Backend:
        """The keys its provider kind needs (base_url for openai, region for AWS, project and location for
        vertex), none it cannot use."""
        from gateway.providers.registry import config_problems, missing_keys  # late: imports every adapter

        fields = self.model_dump(exclude={"models", "headers"})
        problems = config_problems(self.provider, fields)
        if problems:
            raise ValueError("; ".join(problems))
        missing = missing_keys(self.provider, fields)
        if missing:  # a "missing" error: what an offer leaves out, the backend using it gives (loader.py)
            message = "; ".join(f"{key} is required for provider {self.provider}" for key in missing)
            raise PydanticCustomError("missing", message)
        return self


class RouteMatch(_Strict):
    model: str = Field(default="*", min_length=1, description="glob over the requested model")


class Timeouts(_Strict):
    connect_s: float = Field(default=3.0, gt=0)
    first_token_s: float = Field(default=30.0, gt=0, description="until the response headers arrive")
    idle_s: float = Field(default=30.0, gt=0, description="between two chunks of a stream")
    total_s: float = Field(default=300.0, gt=0)
    # A non-streaming attempt's own deadline, so a failover fits inside total_s (Envoy's per_try_timeout):
    # per_try_factor x the backend's predicted duration when the request bounds its output (max_tokens),
    # never under first_token_s, never over half of total_s while another backend could take the retry;
    # per_try_s caps it outright. A stream's first token is bounded by first_token_s already.
    per_try_s: float | None = Field(default=None, gt=0)
    per_try_factor: float | None = Field(default=4.0, gt=1)


class Hedge(_Strict):
    """Opt-in: if the first token is late, also ask the next-best backend and keep whichever answers first.
    On a route with `max_ttft_ms`, a stream's backup also starts no later than the limit less its expected
    TTFT and a margin (router.hedge_delay): the SLO hedge."""

    enabled: bool = False
    after_ms: float | None = Field(
        default=None, gt=0, description="default: twice the backend's declared TTFT"
    )


class QuantizationFilter(_Strict):
    """A route's limit on serving precision: an allow list (`unknown` admits undeclared) and/or a minimum."""

    allow: list[PrecisionOrUnknown] | None = Field(default=None, min_length=1)
    min_precision: Precision | None = Field(default=None, description="e.g. fp8: 8 bits or more")


class HardwareSpec(_Strict):
    """One hardware label of a policy's (or the shipped catalog's) `hardware:` section."""

    joules_per_token: float = Field(gt=0, description="energy per output token, for `greenest`")


class HardwareFilter(_Strict):
    allow: list[str] | None = Field(default=None, description="only these hardware labels")
    deny: list[str] = Field(default_factory=list)


class Weights(_Strict):
    """How `balanced` trades each dimension, each taken as a share of the worst candidate's."""

    cost: float = Field(default=0.5, ge=0)
    latency: float = Field(default=0.5, ge=0)
    energy: float = Field(default=0.0, ge=0)


class Shadow(_Strict):
    """Opt-in: mirror a sample of the route's answered requests to other backends, after the answer is sent,
    so telemetry learns their figures on real prompts (gateway/routing/shadow.py). Answers are discarded."""

    backends: list[str] = Field(min_length=1, max_length=16, description="backends to mirror to")
    sample: float = Field(default=0.01, gt=0, le=1, description="share of answered requests mirrored")
    max_usd_per_day: float = Field(default=5.0, gt=0, description="spend cap per UTC day, at policy prices")
    timeout_s: float = Field(default=60.0, gt=0, le=600, description="one shadow request, start to end")

    @field_validator("backends")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"backends listed more than once: {', '.join(repeated)}")
        return names


class Route(_Strict):
    name: str = Field(min_length=1)
    match: RouteMatch = Field(default_factory=RouteMatch)
    objective: Objective = "balanced"
    backends: list[str] | None = Field(default=None, description="allow only these backends")
    max_attempts: int = Field(default=3, ge=1, le=10)
    expected_output_tokens: int = Field(default=256, gt=0, description="used to predict cost and latency")
    timeouts: Timeouts = Field(default_factory=Timeouts)
    hedge: Hedge = Field(default_factory=Hedge)
    weights: Weights = Field(default_factory=Weights)
    probe_interval_s: float = Field(
        default=10.0, ge=0, description="a backend not tried for this long gets one request (0: never probe)"
    )
    probe_share: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="probes at most this share of the route's requests (steady load)",
    )
    forgive_half_life_s: float = Field(
        default=1.0,
        gt=0,
        description="an unrefreshed slow or failing estimate decays toward its last-good one",
    )
    # Hard constraints: a candidate that breaks one is dropped, with the reason in explain.
    max_ttft_ms: float | None = Field(default=None, gt=0)
    min_tokens_per_s: float | None = Field(default=None, gt=0)
    max_input_price: float | None = Field(default=None, ge=0)
    max_output_price: float | None = Field(default=None, ge=0)
    hardware: HardwareFilter = Field(default_factory=HardwareFilter)
    quantization: QuantizationFilter = Field(default_factory=QuantizationFilter)
    min_context_window: int | None = Field(default=None, gt=0)
    shadow: Shadow | None = Field(default=None, description="off unless given")
    # Once a virtual key has spent this share of its daily or monthly budget, its requests on this route
    # try the cheapest candidates first (access/tenancy.py); None: off.
    budget_pressure: float | None = Field(default=None, gt=0, le=1)


class BreakerConfig(_Strict):
    """When a (backend, model) stops getting traffic, and how it comes back."""

    consecutive_failures: int = Field(default=5, ge=1)
    error_rate: float = Field(default=0.5, gt=0, le=1, description="opens at this failure share...")
    min_requests: int = Field(default=20, ge=1, description="...once the window holds this many requests")
    window_s: float = Field(default=30, ge=1)
    cooldown_s: float = Field(default=5, gt=0, description="open time before trials; doubles on each re-open")
    max_cooldown_s: float = Field(default=60, gt=0)
    half_open_trials: int = Field(default=1, ge=1, description="trial requests in flight at once")
    slow_start_s: float = Field(default=10, ge=0, description="traffic ramps up over this after closing")
    auth_cooldown_s: float = Field(default=300, gt=0, description="a backend rejecting its key (401/403)")
    # Failing fast (a 5xx in milliseconds, a refused connection) costs a trial almost nothing: such a trip
    # re-trials every fast_cooldown_s without doubling, and ramps back over fast_ramp_s. Hangs and
    # timeouts re-trial at the hang cadence below.
    fast_failure_s: float = Field(default=0.5, ge=0, description="a failure quicker than this is 'fast'")
    fast_cooldown_s: float = Field(default=0.5, gt=0)
    fast_ramp_s: float = Field(
        default=0.25, gt=0, description="ramp back after a fast trip or a prompt trial (at most slow_start_s)"
    )
    # A hang (a timeout) costs one request's short deadline to re-trial: a single probe, then failover. Its
    # trials come every hang_trial_share of the outage's age (at least hang_trial_s, at most
    # max_cooldown_s), counted from the previous trial's start: exponential in the number of trials (x1.15
    # each), and a recovered backend is found within about a sixth of how long it was down. A trial
    # answering in its expected time ramps back like a fast trip.
    hang_trial_s: float = Field(default=0.5, gt=0, description="shortest gap between a hung backend's trials")
    hang_trial_share: float = Field(
        default=0.15, gt=0, le=1, description="gap as a share of the outage's age"
    )


class RetryBudgetConfig(_Strict):
    ratio: float = Field(default=0.2, ge=0, le=1, description="extra attempts per request over the window")
    min_retries: int = Field(default=10, ge=0, description="always allowed per window, for low traffic")
    window_s: int = Field(default=10, ge=1)


class Resilience(_Strict):
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    retry_budget: RetryBudgetConfig = Field(default_factory=RetryBudgetConfig)


class Policy(_Strict):
    backends: dict[str, Backend] = Field(min_length=1)
    routes: list[Route] = Field(default_factory=lambda: [Route(name="default")])
    resilience: Resilience = Field(default_factory=Resilience)
    # Labels added to (or figures overriding) the shipped hardware catalog (gateway/routing/hardware.py).
    hardware: dict[str, HardwareSpec] = Field(default_factory=dict)
