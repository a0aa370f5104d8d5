"""What every benchmark shares: settings (config), starting and stopping served processes (processes, also
used by the tests), the closed-loop clients (clients) and the statistics (stats)."""
