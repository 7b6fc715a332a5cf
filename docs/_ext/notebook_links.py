"""MkDocs hook: relative Markdown links in the tutorials' cells, made to work on the site -- and checked.

mkdocs-jupyter renders a tutorial (``docs/tutorials/*.py``) to HTML itself, so MkDocs neither rewrites nor
validates the links of its Markdown cells: ``[units](../conventions.md)`` would stay a link to a ``.md`` file.
This hook rewrites every relative ``href`` of a tutorial page that names a documentation file (``.md`` or a
tutorial ``.py``) to that page's URL, and logs a warning -- an error under ``mkdocs build --strict`` -- for a
target that does not exist. Links to URLs and anchors are left alone.
"""

from __future__ import annotations

import logging
import posixpath
import re

log = logging.getLogger("mkdocs.plugins.metacomm.notebook_links")
_HREF = re.compile(r'href="(?![a-z][a-z0-9+.-]*:|#|/)([^"#]+\.(?:md|py))(#[^"]*)?"')


def on_page_content(html, page, config, files):
    if not page.file.src_uri.startswith("tutorials/") or not page.file.src_uri.endswith(".py"):
        return html

    def fix(match: re.Match[str]) -> str:
        target = posixpath.normpath(posixpath.join(posixpath.dirname(page.file.src_uri), match.group(1)))
        found = files.get_file_from_path(target)
        if found is None:
            log.warning("Doc file '%s' contains a link '%s', but the target '%s' is not found among documentation "
                        "files.", page.file.src_uri, match.group(1), target)
            return match.group(0)
        return f'href="{found.url_relative_to(page.file)}{match.group(2) or ""}"'

    return _HREF.sub(fix, html)
