"""A student without a browser: one Streamlit session driven over Streamlit 1.67's own protocol.

Measures what a class costs the server without paying for browsers: a `Student` opens the
websocket `/_stcore/stream` and exchanges the same protobuf messages the frontend does
(`BackMsg` out, `ForwardMsg` in, from `streamlit.proto`):

- the XSRF cookie from `/_stcore/health`, its token as the websocket's second subprotocol;
- every rerun carries the state of every widget on screen (as the frontend's WidgetStateManager
  does), the query string the server last set, the page, and the hashes of the cached messages,
  so the server sends references instead of repeating large elements (ForwardMessageCache.ts);
- widgets are found in the elements the server sends (by label, never by a hard-coded id); a
  widget's value is the server's (`set_value`), else the one this client chose, else its default;
- an upload is `file_urls_request`, then `PUT /_stcore/upload_file/<session>/<file>` (multipart,
  XSRF cookie and header), then the uploader's widget state in a rerun;
- a page switch sends the new page's hash with the main script's widgets only, like `onPageChange`;
- a run is finished when the last run started after the request ends with `script_finished`
  (full or fragment run); `FINISHED_EARLY_FOR_RERUN` is only a step of the chain;
- `st.fragment(run_every=...)` timers run as the frontend's do (`auto_rerun` starts one; a full
  run, `stop_auto_rerun` or a page switch stops them); an action lasts until its page has
  settled: its run finished and no progress bar on screen that a polling fragment still moves
  (a queued job's place and progress), as a person waits for the page to be complete.

Each action returns a `Run`: seconds, bytes received (websocket frames plus the media files the
page shows, fetched as a browser would), exceptions and error alerts on screen, the page it landed
on. Not emulated: component iframes and the data-editor's edits.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import requests
import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.Common_pb2 import FileUploaderState, UploadedFileInfo
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

XSRF_COOKIE = "_streamlit_xsrf"
SIDEBAR = 1  # delta_path[0]: 0 the main area, 1 the sidebar, 2 events, 3 the bottom
DONE = {
    ForwardMsg.FINISHED_SUCCESSFULLY: "ok",
    ForwardMsg.FINISHED_WITH_COMPILE_ERROR: "compile error",
    ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY: "ok",
}
# Element types that are widgets, with the WidgetState field the server reads for each.
VALUE_FIELD = {
    "selectbox": "string_value",
    "radio": "string_value",
    "text_input": "string_value",
    "text_area": "string_value",
    "color_picker": "string_value",
    "checkbox": "bool_value",
    "number_input": "double_value",
    "multiselect": "string_array_value",
    "button_group": "string_array_value",
    "slider": "double_array_value",  # a select_slider (options) sends string_array_value
    "file_uploader": "file_uploader_state_value",
    "camera_input": "file_uploader_state_value",
    "button": "trigger_value",
    "download_button": "trigger_value",
}


class ProtocolError(RuntimeError):
    """The server did something a browser would show as broken (a dropped socket, an unknown widget)."""


@dataclass
class Widget:
    """One widget on screen, as the server last drew it."""

    id: str
    kind: str  # the Element oneof name: "selectbox", "radio", "slider", ...
    label: str
    proto: Any  # the widget's own message (Selectbox, Radio, ...)
    path: tuple[int, ...]
    fragment_id: str
    script_hash: str  # the script that drew it (the main script for the sidebar)

    @property
    def in_sidebar(self) -> bool:
        return self.path[0] == SIDEBAR

    @property
    def form_id(self) -> str:
        return getattr(self.proto, "form_id", "")

    @property
    def options(self) -> list[str]:
        """The labels a student can choose from (select-like widgets), else []."""
        if self.kind == "button_group":
            return [o.content for o in self.proto.options]
        return list(getattr(self.proto, "options", []))


@dataclass
class Run:
    """What one action cost and what came back."""

    action: str
    page: str = ""  # the title of the page the run was for
    seconds: float = 0.0
    bytes: int = 0  # websocket frames + media files fetched
    messages: int = 0
    status: str = "ok"  # "ok", "timeout", "dropped", "compile error", "no rerun" (a widget that ignores reruns)
    exceptions: list[str] = field(default_factory=list)  # st.exception elements on screen after the run
    error_alerts: list[str] = field(default_factory=list)  # st.error elements on screen after the run
    spinners: list[str] = field(default_factory=list)  # texts of the spinners shown during the run
    lost: str = ""  # why the action did not take ("" when it did)

    @property
    def finished(self) -> bool:
        return self.status in ("ok", "no rerun")


@dataclass
class _Node:
    element: Any  # Element or Block message
    is_block: bool
    run_id: str
    fragment_id: str
    script_hash: str


class Student:
    """One browser tab's worth of Streamlit session, without the browser.

    Use as `async with Student(url) as s:`; every action waits for the run it caused.
    Not thread-safe: one task drives one student.
    """

    def __init__(self, base_url: str, *, timeout: float = 120.0, fetch_media: bool = True) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.fetch_media = fetch_media
        self.session_id = ""
        self.pages: dict[str, str] = {}  # page title -> page_script_hash
        self.page_hash = ""
        self.main_script_hash = ""
        self.query_string = ""
        self.auto_reruns = 0  # reruns sent by run_every timers so far
        self._xsrf = ""
        self._ws: Any = None
        self._reader: asyncio.Task | None = None
        self._nodes: dict[tuple[int, ...], _Node] = {}
        self._values: dict[str, WidgetState] = {}  # committed widget states, by widget id
        self._pending: dict[str, dict[str, WidgetState]] = {}  # form id -> states waiting for submit
        self._cache: dict[str, tuple[bytes, int]] = {}  # hash -> (encoded message, script run count)
        self._runs_done = 0
        self._max_age = 2
        self._latest_run = ""  # script_run_id of the last run the server started
        self._started: list[tuple[str, list[str]]] = []  # (script_run_id, fragment ids) of every run, in order
        self._finished: dict[str, str] = {}  # script_run_id -> finished status
        self._event = asyncio.Event()
        self._file_urls: dict[str, Any] = {}
        self._bytes = 0
        self._messages = 0
        self._media_seen: set[str] = set()
        self._http = requests.Session()  # keeps its connections open, as a browser does
        self._closed: str = ""  # why the socket closed, once it has
        self._media_tasks: list[asyncio.Future] = []
        self._spinners: list[str] = []
        self._timers: dict[str, tuple[float, asyncio.Task]] = {}  # fragment id -> (interval, its timer)
        self._acting = False  # an action's own rerun is in flight: timers wait (see _timer)

    async def __aenter__(self) -> Student:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- connection -------------------------------------------------------------------

    async def connect(self) -> Run:
        """Open the session like a browser opening the app's URL; returns the first run."""
        self._xsrf = await asyncio.to_thread(self._fetch_xsrf_cookie)
        ws_url = "ws" + self.base_url[len("http") :] + "/_stcore/stream"
        host = urlparse(self.base_url).netloc
        self._ws = await websockets.connect(
            ws_url,
            subprotocols=["streamlit", self._xsrf] if self._xsrf else ["streamlit"],
            additional_headers={"Cookie": f"{XSRF_COOKIE}={self._xsrf}"} if self._xsrf else None,
            origin=f"http://{host}",
            max_size=None,
            compression=None,
            open_timeout=self.timeout,
            ping_interval=None,  # the server pings; the client answers (as a browser does)
        )
        self._reader = asyncio.create_task(self._read(), name="student-reader")
        return await self._rerun("open the app", page_hash="")

    async def close(self) -> None:
        self._stop_timers()
        self._http.close()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    def _fetch_xsrf_cookie(self) -> str:
        """GET the health endpoint as the frontend does first; its response sets the XSRF cookie."""
        self._http.get(f"{self.base_url}/_stcore/health", timeout=self.timeout).raise_for_status()
        return self._http.cookies.get(XSRF_COOKIE, "")

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                self._bytes += len(frame)
                self._messages += 1
                self._handle(self._dereference(frame))
                self._event.set()
        except websockets.ConnectionClosed as exc:
            self._closed = f"socket closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
        finally:
            self._closed = self._closed or "socket closed"
            self._event.set()

    def _dereference(self, frame: bytes) -> ForwardMsg:
        """Decode a frame; a reference to a cached message becomes that message (ForwardMessageCache.ts)."""
        msg = ForwardMsg()
        msg.ParseFromString(frame)
        if msg.WhichOneof("type") == "ref_hash":
            cached = self._cache.get(msg.ref_hash)
            if cached is None:
                raise ProtocolError(f"the server referred to a message this client never cached: {msg.ref_hash}")
            full = ForwardMsg()
            full.ParseFromString(cached[0])
            full.metadata.CopyFrom(msg.metadata)
            self._cache[msg.ref_hash] = (cached[0], self._runs_done)
            return full
        if msg.metadata.cacheable and msg.hash:
            self._cache[msg.hash] = (frame, self._runs_done)
        return msg

    # ---- what the server sends ----------------------------------------------------------

    def _handle(self, msg: ForwardMsg) -> None:
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            self._new_session(msg)
        elif kind == "delta":
            self._delta(msg)
        elif kind == "script_finished":
            self._script_finished(msg)
        elif kind == "navigation":
            self.pages = {p.page_name: p.page_script_hash for p in msg.navigation.app_pages}
            self.page_hash = msg.navigation.page_script_hash
        elif kind == "page_info_changed":
            self.query_string = msg.page_info_changed.query_string
        elif kind == "file_urls_response":
            self._file_urls[msg.file_urls_response.response_id] = msg.file_urls_response
        elif kind == "auto_rerun":
            self._start_timer(msg.auto_rerun.fragment_id, msg.auto_rerun.interval)
        elif kind == "stop_auto_rerun":
            self._stop_timers(msg.stop_auto_rerun.fragment_ids)

    def _new_session(self, msg: ForwardMsg) -> None:
        session = msg.new_session
        if session.HasField("initialize"):
            self.session_id = session.initialize.session_id
        if session.HasField("config"):
            self._max_age = session.config.max_cached_message_age
        self.main_script_hash = session.main_script_hash or self.main_script_hash
        self._latest_run = msg.metadata.run.script_run_id
        fragments = list(msg.metadata.run.fragment_ids)
        self._started.append((self._latest_run, fragments))
        if not fragments:  # a full run registers its fragments' timers anew
            self._stop_timers()

    # ---- run_every timers (the frontend's autoRerunIntervals) ------------------------------

    def _start_timer(self, fragment_id: str, interval: float) -> None:
        if not fragment_id or self._timers.get(fragment_id, (None,))[0] == interval:
            return
        self._stop_timers([fragment_id])
        task = asyncio.get_running_loop().create_task(self._timer(fragment_id, interval), name="student-timer")
        self._timers[fragment_id] = (interval, task)

    def _stop_timers(self, fragment_ids: Any = None) -> None:
        for fid in list(self._timers if fragment_ids is None else fragment_ids):
            entry = self._timers.pop(fid, None)
            if entry is not None:
                entry[1].cancel()

    async def _timer(self, fragment_id: str, interval: float) -> None:
        """Rerun one fragment every `interval` seconds, as the frontend's setInterval does. A tick
        that falls while an action's own rerun is on its way is skipped, so the two do not race."""
        while not self._closed:
            await asyncio.sleep(interval)
            if not self._acting and not self._closed:
                self.auto_reruns += 1
                await self._send_rerun(fragment_id=fragment_id, is_auto=True)

    def _delta(self, msg: ForwardMsg) -> None:
        path = tuple(msg.metadata.delta_path)
        delta = msg.delta
        which = delta.WhichOneof("type")
        if which == "new_transient":  # spinners: shown during the run, not part of the page
            shown = delta.new_transient.elements
            self._spinners += [e.spinner.text for e in shown if e.WhichOneof("type") == "spinner"]
            return
        if which not in ("new_element", "add_block"):
            return
        node = _Node(
            delta.new_element if which == "new_element" else delta.add_block,
            which == "add_block",
            self._latest_run,
            delta.fragment_id,
            msg.metadata.active_script_hash,
        )
        if not node.is_block:  # an element replaces whatever subtree stood there
            for p in [p for p in self._nodes if p[: len(path)] == path]:
                del self._nodes[p]
        self._nodes[path] = node
        widget = _as_widget(path, node)
        if widget is not None:
            self._adopt(widget)
        if self.fetch_media and which == "new_element" and delta.new_element.WhichOneof("type") == "imgs":
            for img in delta.new_element.imgs.imgs:
                self._fetch_media_later(img.url)

    def _adopt(self, w: Widget) -> None:
        """A widget drawn by the server: its value is the server's when it says so, else ours, else its default."""
        server = _server_value(w)
        if server is not None:
            self._values[w.id] = server
        elif w.id not in self._values:
            default = _default_value(w)
            if default is not None:
                self._values[w.id] = default

    def _script_finished(self, msg: ForwardMsg) -> None:
        status = msg.script_finished
        run_id = msg.metadata.run.script_run_id or self._latest_run
        if status == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
            return
        fragments = list(msg.metadata.run.fragment_ids)
        if status in (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY):
            self._clear_stale(run_id, fragments)
            self._runs_done += 1
            self._expire_cache(fragments)
        self._finished[run_id] = DONE.get(status, "ok")

    def _clear_stale(self, run_id: str, fragments: list[str]) -> None:
        """Drop what this run did not redraw (the frontend's clearStaleNodes), and the states of widgets gone."""
        stale = [
            p for p, n in self._nodes.items() if n.run_id != run_id and (not fragments or n.fragment_id in fragments)
        ]
        for p in stale:
            del self._nodes[p]
        on_screen = {w.id for w in self.widgets()}
        for wid in [wid for wid in self._values if wid not in on_screen]:
            del self._values[wid]

    def _expire_cache(self, fragments: list[str]) -> None:
        if fragments:  # the frontend ages only the fragment's own messages; keeping all is close enough
            return
        for h, (_, seen) in list(self._cache.items()):
            if self._runs_done - seen > self._max_age:
                del self._cache[h]

    def _fetch_media_later(self, url: str) -> None:
        if not url.startswith("/media/") or url in self._media_seen:
            return
        self._media_seen.add(url)
        self._media_tasks.append(asyncio.ensure_future(asyncio.to_thread(self._get_bytes, url)))

    def _get_bytes(self, url: str) -> int:
        try:
            return len(self._http.get(self.base_url + url, timeout=self.timeout).content)
        except requests.RequestException:
            return 0

    # ---- what is on screen --------------------------------------------------------------

    def widgets(self) -> list[Widget]:
        """Every widget on screen, in page order."""
        out = []
        for path in sorted(self._nodes):
            w = _as_widget(path, self._nodes[path])
            if w is not None:
                out.append(w)
        return out

    def widget(self, label: str, kind: str | None = None, *, sidebar: bool | None = None) -> Widget:
        """The widget on screen with this label (and kind / place); ProtocolError if none or several."""
        found = [
            w
            for w in self.widgets()
            if w.label == label and (kind is None or w.kind == kind) and (sidebar is None or w.in_sidebar == sidebar)
        ]
        if len(found) != 1:
            on_screen = ", ".join(f"{w.kind} {w.label!r}" for w in self.widgets())
            raise ProtocolError(f"{len(found)} widgets labelled {label!r} on screen; there are: {on_screen}")
        return found[0]

    def value(self, widget: Widget) -> Any:
        """The value this client holds for a widget (what the next rerun sends), as a plain Python value."""
        state = self._values.get(widget.id)
        return None if state is None else _plain(state)

    def elements(self, kind: str | None = None) -> list[Any]:
        """Elements on screen (not blocks), optionally of one type ("markdown", "plotly_chart", ...)."""
        out = []
        for path in sorted(self._nodes):
            node = self._nodes[path]
            if not node.is_block and (kind is None or node.element.WhichOneof("type") == kind):
                out.append(node.element)
        return out

    @property
    def page_title(self) -> str:
        return next((t for t, h in self.pages.items() if h == self.page_hash), "")

    # ---- actions ------------------------------------------------------------------------

    async def switch_page(self, title: str) -> Run:
        """Click a page link: only the main script's widgets travel with the request, the query is cleared."""
        if title not in self.pages:
            raise ProtocolError(f"no page {title!r}; the app has {sorted(self.pages)}")
        target = self.pages[title]
        keep = {w.id for w in self.widgets() if w.script_hash == self.main_script_hash}
        states = [s for wid, s in self._values.items() if wid in keep]
        self._stop_timers()
        if target != self.page_hash:
            self.query_string = ""
        run = await self._rerun(f"open {title}", page_hash=target, states=states)
        if run.finished and self.page_hash != target:
            run.lost = f"landed on {self.page_title!r}"
        return run

    async def set_widget(self, widget: Widget | str, value: Any) -> Run:
        """Change a widget as a student would (an option's label, a number, a bool...) and wait for the run.

        The run must send the widget back with the new value (when the server states values) and
        keep it on screen; otherwise `Run.lost` says how the change was lost.
        """
        w = self.widget(widget) if isinstance(widget, str) else widget
        state = _state_for(w, value)
        if w.form_id:  # a form's widgets wait for its submit button, as in the browser
            self._pending.setdefault(w.form_id, {})[w.id] = state
            return Run(f"set {w.label}", self.page_title, status="no rerun")
        self._values[w.id] = state
        if getattr(w.proto, "ignore_rerun", False):
            return Run(f"set {w.label}", self.page_title, status="no rerun")
        run = await self._rerun(f"set {w.label}", fragment_id=w.fragment_id)
        if run.finished:
            run.lost = self._lost(w, state)
        return run

    async def click(self, widget: Widget | str) -> Run:
        """Press a button (a form's submit button commits the form's pending changes first)."""
        w = self.widget(widget, "button") if isinstance(widget, str) else widget
        if getattr(w.proto, "is_form_submitter", False):
            self._values.update(self._pending.pop(w.form_id, {}))
        trigger = WidgetState(id=w.id, trigger_value=True)
        return await self._rerun(f"click {w.label}", fragment_id=w.fragment_id, extra=[trigger])

    async def upload(self, widget: Widget | str, filename: str, data: bytes, mime: str = "image/png") -> Run:
        """Choose a file in an uploader: ask for URLs, PUT the file, then rerun with the uploader's state."""
        w = self.widget(widget, "file_uploader") if isinstance(widget, str) else widget
        start = time.perf_counter()
        request_id = secrets.token_hex(8)
        msg = BackMsg()
        msg.file_urls_request.request_id = request_id
        msg.file_urls_request.session_id = self.session_id
        msg.file_urls_request.file_names.append(filename)
        await self._ws.send(msg.SerializeToString())
        urls = await self._wait_for(lambda: self._file_urls.pop(request_id, None))
        if urls is None or not urls.file_urls:
            waited = time.perf_counter() - start
            return Run(f"upload {filename}", self.page_title, waited, status=self._closed or "timeout")
        file_urls = urls.file_urls[0]
        await asyncio.to_thread(self._put, file_urls.upload_url, filename, data, mime)
        info = UploadedFileInfo(file_id=file_urls.file_id, name=filename, size=len(data))
        info.file_urls.CopyFrom(file_urls)
        state = WidgetState(id=w.id, file_uploader_state_value=FileUploaderState(uploaded_file_info=[info]))
        self._values[w.id] = state
        run = await self._rerun(f"upload {filename}", fragment_id=w.fragment_id)
        run.seconds = time.perf_counter() - start
        return run

    def _put(self, upload_url: str, filename: str, data: bytes, mime: str) -> None:
        boundary = secrets.token_hex(16)
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="UploadedFile"; filename="{filename}"\r\n'
                f"Content-Type: {mime}\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        url = upload_url if upload_url.startswith("http") else self.base_url + upload_url
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "X-Xsrftoken": self._xsrf}
        resp = self._http.put(url, data=body, headers=headers, timeout=self.timeout)  # the session sends the cookie
        if resp.status_code not in (200, 204):
            raise ProtocolError(f"upload refused: HTTP {resp.status_code} {resp.text[:200]}")

    def _lost(self, w: Widget, sent: WidgetState) -> str:
        """How a widget change was lost, judged from what the server drew back ("" if it took)."""
        now = next((x for x in self.widgets() if x.id == w.id), None)
        if now is None:
            return f"{w.label!r} is no longer on screen"
        server = _server_value(now)
        if server is not None and _plain(server) != _plain(sent):
            return f"{w.label!r} came back as {_plain(server)!r}, not {_plain(sent)!r}"
        return ""

    # ---- one rerun ----------------------------------------------------------------------

    async def _rerun(
        self,
        action: str,
        *,
        page_hash: str | None = None,
        states: list[WidgetState] | None = None,
        fragment_id: str = "",
        extra: list[WidgetState] | None = None,
    ) -> Run:
        """Send one rerun and wait for its run to finish and the page to settle; what it cost."""
        if self._closed:
            return Run(action, self.page_title, status="dropped", lost=self._closed)
        self._media_tasks, self._spinners = [], []
        bytes0, messages0 = self._bytes, self._messages
        start = time.perf_counter()
        before = len(self._started)
        self._acting = True
        try:
            await self._send_rerun(page_hash=page_hash, states=states, fragment_id=fragment_id, extra=extra)
            status = await self._wait_for(lambda: self._status_since(before, fragment_id))
        finally:
            self._acting = False
        if status is not None and not await self._wait_for(lambda: True if self._settled() else None):
            status = None
        media = sum(await asyncio.gather(*self._media_tasks)) if self._media_tasks else 0
        run = Run(
            action,
            self.page_title,
            time.perf_counter() - start,
            self._bytes - bytes0 + media,
            self._messages - messages0,
            status or ("dropped" if self._closed else "timeout"),
            spinners=self._spinners,
        )
        for el in self.elements("exception"):
            run.exceptions.append(f"{el.exception.type}: {el.exception.message}"[:300])
        for el in self.elements("alert"):
            if el.alert.format == el.alert.ERROR:
                run.error_alerts.append(el.alert.body[:300])
        return run

    async def _send_rerun(
        self,
        *,
        page_hash: str | None = None,
        states: list[WidgetState] | None = None,
        fragment_id: str = "",
        extra: list[WidgetState] | None = None,
        is_auto: bool = False,
    ) -> None:
        state = ClientState(
            query_string=self.query_string,
            page_script_hash=self.page_hash if page_hash is None else page_hash,
            fragment_id=fragment_id,
            is_auto_rerun=is_auto,
            cached_message_hashes=list(self._cache),
        )
        state.widget_states.widgets.extend(list(self._values.values()) if states is None else states)
        state.widget_states.widgets.extend(extra or [])
        ctx = state.context_info
        ctx.timezone, ctx.timezone_offset, ctx.locale = "UTC", 0, "en-US"
        ctx.url, ctx.is_embedded, ctx.color_scheme = self.base_url + "/", False, "light"
        msg = BackMsg()
        msg.rerun_script.CopyFrom(state)
        with contextlib.suppress(websockets.ConnectionClosed):  # the reader records why it closed
            await self._ws.send(msg.SerializeToString())

    def _settled(self) -> bool:
        """The last run has finished, and no polling fragment still moves a progress bar on screen."""
        if self._latest_run not in self._finished:
            return False
        return not (self._timers and self.elements("progress"))

    def _status_since(self, before: int, fragment_id: str) -> str | None:
        """How the run this request asked for finished: the last run started after `before` that is a
        full run, or a run of the fragment asked for (whose st.rerun() may continue as a full run);
        None while none has started or it still runs. A timer's fragment run does not end the wait."""
        mine = [rid for rid, frags in self._started[before:] if not frags or (fragment_id and fragment_id in frags)]
        return self._finished.get(mine[-1]) if mine else None

    async def _wait_for(self, ready: Any) -> Any:
        """Wait until ready() returns something, the socket closes, or the timeout passes (then None)."""
        deadline = time.monotonic() + self.timeout
        while True:
            result = ready()
            if result is not None or self._closed:
                return result
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), left)


# ---- widget values: pure functions of the element the server sent ---------------------


def _as_widget(path: tuple[int, ...], node: _Node) -> Widget | None:
    if node.is_block:
        return None
    kind = node.element.WhichOneof("type")
    if kind not in VALUE_FIELD:
        return None
    proto = getattr(node.element, kind)
    return Widget(proto.id, kind, getattr(proto, "label", ""), proto, path, node.fragment_id, node.script_hash)


def _field(w: Widget) -> str:
    if w.kind == "slider" and w.proto.options:
        return "string_array_value"  # a select_slider
    return VALUE_FIELD[w.kind]


def _server_value(w: Widget) -> WidgetState | None:
    """The value the server set (session state or a bound query parameter), if it set one this run."""
    p = w.proto
    if not getattr(p, "set_value", False):
        return None
    if w.kind in ("selectbox", "radio"):
        return WidgetState(id=w.id, string_value=p.raw_value) if p.HasField("raw_value") else None
    if w.kind == "slider":
        if p.options:
            return _state_for(w, list(p.raw_value))
        return _state_for(w, list(p.value))
    if w.kind in ("multiselect", "button_group"):
        return _state_for(w, list(p.raw_values))
    if w.kind == "number_input":
        return WidgetState(id=w.id, double_value=p.value) if p.HasField("value") else None
    if w.kind in ("text_input", "text_area"):
        return _state_for(w, p.value) if p.HasField("value") else None
    if w.kind in ("checkbox", "color_picker"):
        return _state_for(w, p.value)
    return None


def _default_value(w: Widget) -> WidgetState | None:
    """What the frontend commits for a widget it draws for the first time (None: it sends nothing)."""
    p = w.proto
    if w.kind in ("selectbox", "radio"):
        return WidgetState(id=w.id, string_value=p.options[p.default]) if p.HasField("default") else None
    if w.kind == "slider":
        if p.options:
            return _state_for(w, [p.options[int(i)] for i in p.default])
        return _state_for(w, list(p.default))
    if w.kind in ("multiselect", "button_group"):
        return _state_for(w, [w.options[i] for i in p.default])
    if w.kind == "number_input":
        return WidgetState(id=w.id, double_value=p.default) if p.HasField("default") else None
    if w.kind == "checkbox":
        return WidgetState(id=w.id, bool_value=p.default)
    if w.kind in ("text_input", "text_area"):
        return WidgetState(id=w.id, string_value=p.default) if p.HasField("default") else None
    if w.kind == "color_picker":
        return WidgetState(id=w.id, string_value=p.default)
    return None  # buttons (triggers only when clicked), uploaders (empty until a file is chosen)


def _state_for(w: Widget, value: Any) -> WidgetState:
    """The WidgetState a student's choice becomes; option widgets take labels and refuse unknown ones."""
    name = _field(w)
    if w.options and name in ("string_value", "string_array_value"):
        chosen = value if isinstance(value, list) else [value]
        unknown = [v for v in chosen if v not in w.options]
        if unknown:
            raise ProtocolError(f"{w.label!r} has no option {unknown[0]!r}; options: {w.options}")
    state = WidgetState(id=w.id)
    if name == "string_value":
        state.string_value = str(value)
    elif name == "bool_value":
        state.bool_value = bool(value)
    elif name == "double_value":
        state.double_value = float(value)
    elif name == "string_array_value":
        state.string_array_value.data.extend([str(v) for v in value])
    elif name == "double_array_value":
        state.double_array_value.data.extend([float(v) for v in (value if isinstance(value, list) else [value])])
    else:
        raise ProtocolError(f"{w.kind} {w.label!r} cannot be set to a value here; use click() or upload()")
    return state


def _plain(state: WidgetState) -> Any:
    """A WidgetState as a plain value, for comparing what was sent with what came back."""
    which = state.WhichOneof("value")
    value = getattr(state, which) if which else None
    if which in ("string_array_value", "double_array_value"):
        return list(value.data)
    if which == "file_uploader_state_value":
        return [f.name for f in value.uploaded_file_info]
    return value


def recorded(frames: list[bytes]) -> Student:
    """A Student fed recorded server frames, without a server: for tests of what it reads from them."""
    student = Student("http://recorded", fetch_media=False)
    for frame in frames:
        student._handle(student._dereference(frame))
    return student
