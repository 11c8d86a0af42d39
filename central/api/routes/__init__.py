"""One router per resource; ``central.api.app.create_app`` includes them."""
