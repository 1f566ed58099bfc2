"""Tools beside the product: what the demo, the tests and local trials stand in for the
real service with. `mock_api.py`: a local Compliance API serving a feed over loopback."""
