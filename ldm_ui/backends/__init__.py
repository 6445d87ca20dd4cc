"""Engine backends: the in-process engine (default) or engine replicas on Ray Serve (`--backend ray`)."""

from __future__ import annotations

from ldm_ui.backends.interface import EngineBackend

BACKENDS = ("local", "ray")


def create_engine(config) -> EngineBackend:
    """The engine `config.backend` names, not started. Ray is imported only for the ray backend."""
    if config.backend == "ray":
        from ldm_ui.backends.ray_engine import RayEngine

        return RayEngine(config)
    from ldm_ui.engine.engine import Engine

    return Engine(config)
