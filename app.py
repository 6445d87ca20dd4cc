"""ldm-ui: parse flags -> AppConfig -> Engine -> build_ui -> launch -> the first model load.  Run `python app.py --help`."""

from __future__ import annotations

import contextlib
import gc
import logging
import sys

log = logging.getLogger("ldm_ui")
UPLOAD_MAX_AGE = (3600, 24 * 3600)  # (check every hour, delete files older than a day)


def create_app(config, banner: str | None = None, engine=None, load_now: bool = True):
    """Start the engine, build the Blocks app and queue the first model's load; returns (engine, blocks).

    The load runs on the engine's worker: the header says "Loading model…" until it is in, and jobs submitted
    meanwhile wait behind it in the engine's queue. Nothing here imports torch or diffusers (the load does, on the
    worker); with `load_now=False` the caller submits it (`demo.ldm_ui.startup.submit()`) once the page is served,
    so that those imports do not slow the server's start (main below).
    """
    from ldm_ui.backends import create_engine
    from ldm_ui.ui.app import build_ui
    from ldm_ui.ui.startup import StartupLoad
    from ldm_ui.ui.tabs import extra_tabs

    from ldm_ui.access import exposure_banner, use_private_gradio_folder
    from ldm_ui.images import install_decode_limit
    from ldm_ui.ownership import OWNERS_FILE, OutputOwners
    from ldm_ui.uploads import UploadRegistry
    from ldm_ui.ui.extensions_ui import load_extensions
    from ldm_ui.presets import startup_model

    install_decode_limit()  # one pixel limit for every decode in the process, Pillow's included
    use_private_gradio_folder()  # before any component exists: each one reads the folder when it is made
    owners = OutputOwners(config.cache_dir / OWNERS_FILE)  # read back: a user's history survives a restart
    # the local engine, or engine replicas on Ray Serve (--backend ray); tests pass one with their listeners attached
    engine = engine if engine is not None else create_engine(config)
    engine.event_listeners.append(owners.listener)
    model = startup_model(config, engine.models)  # --preset: an unknown name stops here, its model loads first
    engine.models.resolve(model)  # an unknown model raises RequestError here, before anything is served
    engine.start()
    extension_tabs = load_extensions(config, engine)  # a failing extension is reported in its tab, never raised
    banner = banner if banner is not None else exposure_banner(config)
    demo = build_ui(engine, banner=banner, extra_tabs=extra_tabs() + extension_tabs, loading_model=model,
                    owners=owners, uploads=UploadRegistry())
    # queued only now: diffusers' lazy imports are not safe while this thread is still importing the UI's modules
    demo.ldm_ui.startup = StartupLoad(engine, model, submit=load_now)
    demo.ldm_owners = owners  # the file route asks it whose a saved image is (ldm_ui/guard.py)
    demo.delete_cache = UPLOAD_MAX_AGE  # Gradio deletes this app's uploads and copies after a day
    return engine, demo


def create_api(config, engine, demo):
    """The /sdapi/v1 app (--api) over the same engine; None without --api. Mounted by launch_kwargs."""
    if not config.api:
        return None
    from ldm_ui.api.routes import create_api as create

    # Gradio's app exists once launched; the API reads its session logins from it
    return create(config, engine, gradio_app=lambda: getattr(demo, "server_app", None))


def launch_kwargs(config, api=None) -> dict:
    from ldm_ui.access import file_access_kwargs
    from ldm_ui.cors import cors_lifespan
    from ldm_ui.guard import guard_middleware
    from ldm_ui.login_page import login_page_middleware
    from ldm_ui.ui.common import CSS, KEYBOARD_JS
    from ldm_ui.ui.number_fields import NUMBER_NOTES_CSS, NUMBER_NOTES_JS

    # no unauthenticated route map; Host/Origin/login-before-read/body caps/file owners (ldm_ui/guard.py); no
    # API description on the login page (ldm_ui/login_page.py); CORS answered by us, in front of Gradio's own layer
    app_kwargs = {"openapi_url": None, "docs_url": None, "redoc_url": None,
                  "middleware": [*guard_middleware(config), *login_page_middleware()],
                  "lifespan": cors_lifespan(config)}
    if api is not None:
        from starlette.routing import Mount

        from ldm_ui.api.routes import PREFIX

        app_kwargs["routes"] = [Mount(PREFIX, app=api)]  # FastAPI's routes argument: served from the first request
    # run_history=False: our own history is per session; Gradio's adds routes that skip the login (SECURITY.md)
    return dict(
        server_name=config.host, server_port=config.port, share=config.share,
        auth=config.auth or None, **file_access_kwargs(config), css=CSS + NUMBER_NOTES_CSS,
        js=f"() => {{ ({KEYBOARD_JS.strip()})(); ({NUMBER_NOTES_JS.strip()})(); }}", show_error=True,
        run_history=False,
        app_kwargs=app_kwargs,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ldm_ui.config import ConfigError, config_from_args

    try:
        config = config_from_args(argv)
    except ConfigError as error:
        print(f"ldm-ui: {error}", file=sys.stderr)
        return 2
    from ldm_ui.access import exposure_warnings

    for warning in exposure_warnings(config):
        log.warning(warning)
    with collector_paused_while_starting():
        started = start_serving(config)
    if isinstance(started, int):
        return started
    engine, demo = started
    # the page answers now; torch and diffusers are imported by this load, on the engine's worker
    demo.ldm_ui.startup.submit()
    demo.block_thread()  # until Ctrl+C or the server closes
    engine.shutdown()
    return 0


def start_serving(config):
    """The starting page at once, then the app on the same address: (engine, blocks), or an exit code."""
    from ldm_ui.config import ConfigError
    from ldm_ui.presets import PresetError
    from ldm_ui.requests import RequestError
    from ldm_ui.starting_page import StartingPage

    # answers at once with "ldm-ui is starting…" while gradio is imported and the tabs are built
    starting = StartingPage.serve(config.host, config.port)
    try:
        try:
            engine, demo = create_app(config, load_now=False)
        except PresetError as error:
            print(f"ldm-ui: --preset: {error}", file=sys.stderr)
            return 2
        except ConfigError as error:  # e.g. --backend ray asking for more GPUs than the Ray cluster has
            print(f"ldm-ui: {error}", file=sys.stderr)
            return 2
        except RequestError as error:
            print(f"ldm-ui: cannot start with model {config.default_model!r}: {error}", file=sys.stderr)
            return 2
        api = create_api(config, engine, demo)
        if api is not None:
            log.info("AUTOMATIC1111 API on: http://%s:%s/sdapi/v1 (routes: /sdapi/v1/docs)", config.host, config.port)
    finally:
        if starting is not None:
            starting.close()  # the app takes the address next
    demo.launch(prevent_thread_lock=True, **launch_kwargs(config, api))
    return engine, demo


@contextlib.contextmanager
def collector_paused_while_starting():
    """No cyclic garbage collection while the app starts. Start-up makes millions of objects that live as long as
    the app (Gradio's modules, ~1000 components and their configs): the collector's full passes over them free
    nothing and took ~0.8 s of the ~6 s to the page on a 2-core machine (8 passes). Afterwards one collection, and
    what survives it is frozen (gc.freeze), so later full passes skip it."""
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        gc.freeze()
        gc.enable()


if __name__ == "__main__":
    sys.exit(main())
