"""The Swagger page at `/docs`, with every asset served by the service (it works offline)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from diabetes_service.protocols.http import Response

ASSETS = {
    "swagger-ui.css": b"text/css; charset=utf-8",
    "swagger-ui-bundle.js": b"application/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": b"application/javascript; charset=utf-8",
    "favicon-32x32.png": b"image/png",
}

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "/swagger.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "BaseLayout",
      persistAuthorization: true,
      defaultModelsExpandDepth: 1,
      defaultModelExpandDepth: 2
    }});
  </script>
</body>
</html>
"""


class SwaggerPage:
    """Reads the bundled Swagger UI files on the first visit, then answers from memory.

    Not at start-up: importing the bundle and reading ~1.5 MB cost each worker ~20 ms before its
    first scoring answer, for a page few replicas ever serve.
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self.paths = tuple(f"/docs/{name}" for name in ASSETS)

    @cached_property
    def page(self) -> Response:
        return Response(200, PAGE.format(title=self.title).encode(), b"text/html; charset=utf-8")

    @cached_property
    def assets(self) -> dict[str, Response]:
        from swagger_ui_bundle import swagger_ui_path

        folder = Path(str(swagger_ui_path))
        return {
            f"/docs/{name}": Response(200, (folder / name).read_bytes(), content_type)
            for name, content_type in ASSETS.items()
        }
