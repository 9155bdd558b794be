"""The Slack door: Bolt app (app.py), Block Kit rendering (blocks.py), outbox delivery
(delivery.py) and the HTTP / Socket Mode server (server.py)."""
