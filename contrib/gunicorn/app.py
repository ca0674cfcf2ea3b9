"""A tiny WSGI application for logpipe's gunicorn recipe (plain WSGI, no framework).

Run it with run.sh, or: gunicorn app:app

GET /boom fails with ZeroDivisionError, which gunicorn logs with its
traceback (and answers 500); every other path is answered the same way.

Every response carries an X-Request-Id header, "<worker pid>-<n>", where n
counts that worker's requests from 1; an access log format with
%({x-request-id}o)s puts it in each access line.

If COUNTER_FILE is set, the application also appends the request id and a
newline to that file for each request it answered: what the end-to-end
test compares with the access log, counted apart from it. The id is written
after gunicorn has sent the body to the client, which is also when gunicorn
writes the access line (a client that has gone away fails the send, and
then neither is written). The file is opened with O_APPEND and each id is
one small write(2), so the workers' lines never overwrite or cut one
another.
"""

import os

COUNTER_FILE = os.environ.get("COUNTER_FILE")

_served = 0  # requests seen by this worker process
_counter_fd = None  # opened in the worker, after the fork


def app(environ, start_response):
    global _served, _counter_fd
    path = environ.get("PATH_INFO", "/")
    if path == "/boom":
        # An error with a traceback in gunicorn's error log: what the
        # line stage example routes to its own target, traceback included.
        return [str(1 // 0).encode()]
    _served += 1
    request_id = "%d-%d" % (os.getpid(), _served)
    body = ("hello from logpipe, request %s\n" % request_id).encode()
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("X-Request-Id", request_id),
        ],
    )
    yield body
    # gunicorn asks for the next item only once it has written this one to
    # the socket, so this runs only for a response that was sent.
    if COUNTER_FILE:
        if _counter_fd is None:
            _counter_fd = os.open(
                COUNTER_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
            )
        os.write(_counter_fd, (request_id + "\n").encode())
