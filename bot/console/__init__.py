"""The web console: the browser's front door over the same runtime (see bot.console.app)."""
