"""Running a Skyrelay process: the server loop and its graceful stop, child processes, background
tasks, logs, TLS contexts and the ``/metrics`` endpoint. Knows nothing of edges or origins."""
