"""ldm-ui: parse flags -> AppConfig -> Engine -> build_ui -> launch.  Run `python app.py --help`."""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("ldm_ui")


def create_app(config, banner: str | None = None):
    """Start the engine on the configured model and build the Blocks app; returns (engine, blocks)."""
    from ldm_ui.engine.engine import Engine
    from ldm_ui.ui.app import build_ui
    from ldm_ui.ui.tabs import extra_tabs

    engine = Engine(config).start()
    engine.switch_model(config.default_model)
    return engine, build_ui(engine, banner=banner, extra_tabs=extra_tabs())


def launch_kwargs(config) -> dict:
    from ldm_ui.ui.common import CSS

    return dict(
        server_name=config.host, server_port=config.port, share=config.share,
        auth=config.auth or None, allowed_paths=[str(config.outputs_dir)],
        blocked_paths=[str(config.models_dir), str(config.cache_dir)],
        max_file_size=f"{config.max_file_size_mb}mb", css=CSS, show_error=True,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ldm_ui.config import ConfigError, config_from_args

    try:
        config = config_from_args(argv)
    except ConfigError as error:
        print(f"ldm-ui: {error}", file=sys.stderr)
        return 2
    banner = None
    if config.share and not config.auth:
        banner = "⚠️ This app is shared publicly without a login: anyone with the link can use this GPU."
        log.warning(banner)
    elif config.listen and not config.auth:
        log.warning("--listen without --auth: anyone on your network can use this app")
    from ldm_ui.requests import RequestError

    try:
        engine, demo = create_app(config, banner)
    except RequestError as error:
        print(f"ldm-ui: cannot start with model {config.default_model!r}: {error}", file=sys.stderr)
        return 2
    demo.queue(default_concurrency_limit=None)
    demo.launch(**launch_kwargs(config))
    engine.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
