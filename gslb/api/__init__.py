"""The ops HTTP api (aiohttp server): drains, state, explain, audit, metrics, status page."""
