"""Simulated providers (OpenAI-compatible, and Vertex AI's layout) for the demo, tests and benchmarks."""

from gateway.sim.fleet import RunningSim, SimThread, serve_fleet_forever, start_fleet, stop_fleet
from gateway.sim.profiles import DEMO_FLEET, Profile, VertexProfile, profile_with
from gateway.sim.ratelimit import format_duration
from gateway.sim.server import create_app

__all__ = [
    "DEMO_FLEET",
    "Profile",
    "RunningSim",
    "SimThread",
    "VertexProfile",
    "create_app",
    "format_duration",
    "profile_with",
    "serve_fleet_forever",
    "start_fleet",
    "stop_fleet",
]
