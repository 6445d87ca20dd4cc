"""The AUTOMATIC1111-compatible HTTP API (/sdapi/v1), served with --api by the same process as the Gradio app.

schemas.py    request and response bodies (A1111's field names and defaults)
translate.py  A1111 fields -> typed requests (ldm_ui/requests.py); what is not built is reported, never faked
settings.py   what the API remembers (its clip skip), VAE and style names
extras.py     /extra-single-image and /extra-batch-images -> the Extras tab's UpscaleRequest
jobs.py       the API's jobs over the one Engine: owners, latest progress and preview, interrupt
results.py    outputs -> base64 PNGs with their infotext, `parameters`, `info`
listings.py   the GET listings, options and png-info in A1111's shapes
auth.py       HTTP Basic logins and the app's session login; the request body limit
routes.py     the FastAPI app that app.py mounts at /sdapi/v1
"""
