"""The ops HTTP api: drains, state, explain, audit, metrics and the status page.

The aiohttp server lives here (`app`, `server`, `auth`, `metrics`); `tokens`, `client`,
`drains`, `openapi` and `report` use the standard library only, so the CLI can import
`tokens` and `client` without aiohttp. Static files of the status page are in `static/`.
"""
