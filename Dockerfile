# A shared class server: `smtplab serve` on port 2525, keeping every message in a Maildir.
# Use it through compose.yaml, which publishes the port on the host's loopback only:
#     docker compose up -d --build
#     docker compose logs -f          # one line per captured message
#     docker compose down             # SIGTERM: the server prints its summary and exits 0
# Not a mail server to expose to the Internet: a lab server accepts mail from anyone who connects.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user runs the server and owns /data, where the Maildir volume is mounted.
RUN useradd --create-home --uid 10001 smtplab \
    && mkdir -p /data/Maildir \
    && chown -R smtplab:smtplab /data

WORKDIR /src
COPY pyproject.toml README.md ./
COPY smtplab ./smtplab
RUN pip install . && rm -rf /src

USER smtplab
WORKDIR /home/smtplab
EXPOSE 2525
VOLUME ["/data"]

# Answers with a 220 greeting, or the container is marked unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import smtplib; smtplib.SMTP('127.0.0.1', 2525, timeout=4).quit()"]

# Exec form, so SIGTERM from `docker stop` reaches smtplab itself (PID 1), which treats it as Ctrl-C.
STOPSIGNAL SIGTERM
ENTRYPOINT ["smtplab"]
CMD ["serve", "--host", "0.0.0.0", "--port", "2525", "--allow-remote", "--maildir", "/data/Maildir", "--max-connections", "100"]
