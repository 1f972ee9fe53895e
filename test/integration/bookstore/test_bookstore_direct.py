"""
The Bookstore example service (examples/bookstore), called directly with
Debian's python3-grpcio, no Portico in between: all four call types, error
codes and details, metadata and trailers, deadlines, cancellation, shutdown,
and the google.api.http bindings in the generated descriptor set.
"""
import base64
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
import unittest

from bookstore_server import PB, BookstoreServer, grpc, pb, pb_grpc
from portico_test import h2_call

from google.protobuf import descriptor_pb2
from google.api import annotations_pb2  # noqa: F401  (registers the http extension)
from google.api import httpbody_pb2
from google.rpc import error_details_pb2, status_pb2

SRV = None
_uniq = itertools.count(1)


def uniq(prefix):
    return "%s-%d-%d" % (prefix, os.getpid(), next(_uniq))


def setUpModule():
    global SRV
    SRV = BookstoreServer(threads=2).start()


def tearDownModule():
    rc = SRV.stop()
    assert rc == 0, "bookstore-server exited with %s: %s" % (rc, SRV.stderr)
    # Every call struct was freed, cancelled ones included.
    assert "calls alive" not in SRV.stderr, SRV.stderr


def status_details(err):
    """The google.rpc.Status from an RpcError's grpc-status-details-bin."""
    for k, v in err.trailing_metadata() or ():
        if k == "grpc-status-details-bin":
            st = status_pb2.Status()
            st.ParseFromString(v)
            return st
    return None


class Base(unittest.TestCase):
    def setUp(self):
        self.stub = pb_grpc.BookstoreStub(SRV.channel())

    def assertCode(self, code, fn, *args, **kw):
        with self.assertRaises(grpc.RpcError) as cm:
            r = fn(*args, **kw)
            if hasattr(r, "__iter__") and not isinstance(r, (bytes, str)):
                list(r)
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        return cm.exception

    def new_shelf(self, **labels):
        return self.stub.CreateShelf(pb.CreateShelfRequest(
            shelf=pb.Shelf(theme=uniq("theme"), labels=labels)))


class TestUnary(Base):
    def test_seeded_shelves(self):
        r = self.stub.ListShelves(pb.ListShelvesRequest())
        themes = {s.theme: s for s in r.shelves}
        self.assertIn("Fiction", themes)
        self.assertIn("Computing", themes)
        self.assertEqual(themes["Fiction"].labels["floor"], "1")
        self.assertGreater(themes["Fiction"].create_time.seconds, 1600000000)

    def test_list_shelves_label_filter_and_paging(self):
        tag = uniq("lbl")
        made = [self.new_shelf(batch=tag) for _ in range(3)]
        r = self.stub.ListShelves(pb.ListShelvesRequest(labels={"batch": tag}))
        self.assertEqual([s.id for s in r.shelves], [s.id for s in made])
        self.assertEqual(r.next_page_token, "")
        p1 = self.stub.ListShelves(pb.ListShelvesRequest(labels={"batch": tag}, page_size=2))
        self.assertEqual(len(p1.shelves), 2)
        self.assertNotEqual(p1.next_page_token, "")
        p2 = self.stub.ListShelves(pb.ListShelvesRequest(
            labels={"batch": tag}, page_size=2, page_token=p1.next_page_token))
        self.assertEqual([s.id for s in p2.shelves], [made[2].id])
        self.assertEqual(p2.next_page_token, "")

    def test_shelf_lifecycle(self):
        theme = uniq("Poetry")
        s = self.stub.CreateShelf(pb.CreateShelfRequest(
            shelf=pb.Shelf(theme=theme, labels={"floor": "3", "env": "test"})))
        self.assertGreater(s.id, 0)
        self.assertEqual(s.theme, theme)
        self.assertEqual(dict(s.labels), {"floor": "3", "env": "test"})
        self.assertGreater(s.create_time.seconds, 0)
        self.assertEqual(self.stub.GetShelf(pb.GetShelfRequest(shelf=s.id)), s)
        e = self.assertCode(grpc.StatusCode.ALREADY_EXISTS, self.stub.CreateShelf,
                            pb.CreateShelfRequest(shelf=pb.Shelf(theme=theme)))
        info = error_details_pb2.ResourceInfo()
        self.assertTrue(status_details(e).details[0].Unpack(info))
        self.assertEqual(info.resource_name, "shelves/%d" % s.id)
        self.stub.DeleteShelf(pb.DeleteShelfRequest(shelf=s.id))
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.stub.GetShelf,
                        pb.GetShelfRequest(shelf=s.id))
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.stub.DeleteShelf,
                        pb.DeleteShelfRequest(shelf=s.id))

    def test_invalid_shelf_has_bad_request_detail(self):
        e = self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.stub.CreateShelf,
                            pb.CreateShelfRequest(shelf=pb.Shelf(theme="")))
        st = status_details(e)
        self.assertEqual(st.code, grpc.StatusCode.INVALID_ARGUMENT.value[0])
        self.assertEqual(st.message, e.details())
        br = error_details_pb2.BadRequest()
        self.assertTrue(st.details[0].Unpack(br))
        self.assertEqual(br.field_violations[0].field, "shelf.theme")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.stub.CreateShelf,
                        pb.CreateShelfRequest())
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.stub.CreateShelf,
                        pb.CreateShelfRequest(shelf=pb.Shelf(theme="x" * 257)))

    def test_not_found_has_resource_info(self):
        e = self.assertCode(grpc.StatusCode.NOT_FOUND, self.stub.GetBook,
                            pb.GetBookRequest(shelf=1, book=999999))
        info = error_details_pb2.ResourceInfo()
        self.assertTrue(status_details(e).details[0].Unpack(info))
        self.assertEqual(info.resource_type, "bookstore.v1.Book")
        self.assertEqual(info.resource_name, "shelves/1/books/999999")
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.stub.ListBooks,
                        pb.ListBooksRequest(shelf=424242))

    def test_book_lifecycle(self):
        s = self.new_shelf()
        b = self.stub.CreateBook(pb.CreateBookRequest(shelf=s.id, book=pb.Book(
            title="Ficciones", author="Borges", genre=pb.FICTION, tags=["short", "es"],
            pages=174, id=12345)))
        self.assertNotEqual(b.id, 12345)  # ids are output only
        self.assertEqual(b.shelf, s.id)
        self.assertEqual(list(b.tags), ["short", "es"])
        self.assertEqual(b.genre, pb.FICTION)
        self.assertGreater(b.create_time.seconds, 0)
        self.assertEqual(self.stub.GetBook(pb.GetBookRequest(shelf=s.id, book=b.id)), b)
        # The additional binding's request: the book by id on any shelf.
        self.assertEqual(self.stub.GetBook(pb.GetBookRequest(book=b.id)), b)
        self.assertEqual(self.stub.GetShelf(pb.GetShelfRequest(shelf=s.id)).book_count, 1)
        self.assertCode(grpc.StatusCode.ALREADY_EXISTS, self.stub.CreateBook,
                        pb.CreateBookRequest(shelf=s.id, book=pb.Book(title="Ficciones",
                                                                      author="x")))
        # A shelf with books is only deleted with force.
        self.assertCode(grpc.StatusCode.FAILED_PRECONDITION, self.stub.DeleteShelf,
                        pb.DeleteShelfRequest(shelf=s.id))
        self.stub.DeleteBook(pb.DeleteBookRequest(shelf=s.id, book=b.id))
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.stub.GetBook,
                        pb.GetBookRequest(shelf=s.id, book=b.id))
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.stub.DeleteBook,
                        pb.DeleteBookRequest(shelf=s.id, book=b.id))
        self.stub.CreateBook(pb.CreateBookRequest(shelf=s.id, book=pb.Book(title="a",
                                                                           author="b")))
        self.stub.DeleteShelf(pb.DeleteShelfRequest(shelf=s.id, force=True))
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.stub.GetShelf,
                        pb.GetShelfRequest(shelf=s.id))

    def test_invalid_books(self):
        s = self.new_shelf()
        cases = [
            (pb.Book(author="a"), "book.title"),
            (pb.Book(title="t"), "book.author"),
            (pb.Book(title="t", author="a", pages=-1), "book.pages"),
            (pb.Book(title="t", author="a", tags=[""]), "book.tags"),
            (pb.Book(title="t", author="a", tags=["x"] * 17), "book.tags"),
            (pb.Book(title="t", author="a", genre=99), "book.genre"),
        ]
        for book, field in cases:
            e = self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.stub.CreateBook,
                                pb.CreateBookRequest(shelf=s.id, book=book))
            br = error_details_pb2.BadRequest()
            status_details(e).details[0].Unpack(br)
            self.assertEqual(br.field_violations[0].field, field)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.stub.CreateBook,
                        pb.CreateBookRequest(shelf=s.id))
        self.assertEqual(self.stub.GetShelf(pb.GetShelfRequest(shelf=s.id)).book_count, 0)

    def test_list_books_filter_and_paging(self):
        s = self.new_shelf()
        specs = [("A", "ann", pb.POETRY, ["x"]), ("B", "bob", pb.HISTORY, ["x", "y"]),
                 ("C", "ann", pb.POETRY, ["y"]), ("D", "ann", pb.POETRY, ["x", "y"])]
        ids = {}
        for title, author, genre, tags in specs:
            ids[title] = self.stub.CreateBook(pb.CreateBookRequest(shelf=s.id, book=pb.Book(
                title=title, author=author, genre=genre, tags=tags))).id

        def titles(**kw):
            return [b.title for b in self.stub.ListBooks(
                pb.ListBooksRequest(shelf=s.id, **kw)).books]

        self.assertEqual(titles(), ["A", "B", "C", "D"])
        self.assertEqual(titles(filter=pb.BookFilter(genre=pb.POETRY)), ["A", "C", "D"])
        self.assertEqual(titles(filter=pb.BookFilter(author="bob")), ["B"])
        self.assertEqual(titles(filter=pb.BookFilter(tags=["x", "y"])), ["B", "D"])
        self.assertEqual(titles(filter=pb.BookFilter(genre=pb.POETRY, tags=["y"])), ["C", "D"])
        seen, token = [], ""
        for _ in range(5):
            r = self.stub.ListBooks(pb.ListBooksRequest(shelf=s.id, page_size=1,
                                                        page_token=token))
            seen += [b.title for b in r.books]
            token = r.next_page_token
            if not token:
                break
        self.assertEqual(seen, ["A", "B", "C", "D"])
        for bad in (dict(page_size=-1), dict(page_size=1001), dict(page_token="abc"),
                    dict(page_token="-3")):
            self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.stub.ListBooks,
                            pb.ListBooksRequest(shelf=s.id, **bad))

    def test_echo(self):
        self.assertEqual(self.stub.Echo(pb.EchoRequest(message="hello")).message, "hello")
        big = "z" * 100000
        self.assertEqual(self.stub.Echo(pb.EchoRequest(message=big)).message, big)

    def test_echo_failures(self):
        for code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
                     grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE,
                     grpc.StatusCode.INTERNAL):
            e = self.assertCode(code, self.stub.Echo,
                                pb.EchoRequest(message="x", fail_code=code.value[0]))
            self.assertEqual(e.details(), "echo: requested failure")
            self.assertIn(("x-bookstore", "1"), e.trailing_metadata())
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.stub.Echo,
                        pb.EchoRequest(fail_code=17))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.stub.Echo,
                        pb.EchoRequest(delay_ms=-5))

    def test_unknown_method_and_malformed_request(self):
        ch = SRV.channel()
        nope = ch.unary_unary("/bookstore.v1.Bookstore/Nope")
        self.assertCode(grpc.StatusCode.UNIMPLEMENTED, nope, b"")
        other = ch.unary_unary("/other.Service/Get")
        self.assertCode(grpc.StatusCode.UNIMPLEMENTED, other, b"\x01\x02")
        raw = ch.unary_unary("/bookstore.v1.Bookstore/GetShelf")
        e = self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, raw, b"\xff\xff\xff")
        self.assertIn("malformed", e.details())
        # proto3 strings must be UTF-8: CreateShelf{shelf{theme: "\xff"}}, and an
        # overlong encoding of "/" in a Chat message.
        create = ch.unary_unary("/bookstore.v1.Bookstore/CreateShelf")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, create, b"\x0a\x03\x12\x01\xff")
        chat = ch.stream_stream("/bookstore.v1.Bookstore/Chat")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, chat, iter([b"\x12\x02\xc0\xaf"]))
        good = pb.CreateShelfRequest(shelf=pb.Shelf(theme=uniq("\u00e9t\u00e9 \U0001f4da")))
        self.assertEqual(pb.Shelf.FromString(create(good.SerializeToString())).theme,
                         good.shelf.theme)
        # The service still answers afterwards.
        self.assertEqual(raw(pb.GetShelfRequest(shelf=1).SerializeToString())[:2], b"\x08\x01")


class TestMetadata(Base):
    MD = [("x-request-id", "req-42"), ("x-echo-color", "blue"),
          ("x-echo-blob-bin", b"\x00\xffbin"), ("x-other", "not echoed")]

    def check_initial(self, md):
        md = list(md)
        self.assertIn(("x-request-id", "req-42"), md)
        self.assertIn(("x-echo-color", "blue"), md)
        self.assertIn(("x-echo-blob-bin", b"\x00\xffbin"), md)
        self.assertNotIn("x-other", [k for k, _ in md])

    def test_unary(self):
        r, call = self.stub.GetShelf.with_call(pb.GetShelfRequest(shelf=1), metadata=self.MD)
        self.check_initial(call.initial_metadata())
        self.assertIn(("x-bookstore", "1"), call.trailing_metadata())

    def test_errors_keep_metadata(self):
        e = self.assertCode(grpc.StatusCode.NOT_FOUND, self.stub.GetShelf,
                            pb.GetShelfRequest(shelf=987654), metadata=self.MD)
        self.check_initial(e.initial_metadata())
        self.assertIn(("x-bookstore", "1"), e.trailing_metadata())

    def test_server_streaming(self):
        it = self.stub.WatchBooks(pb.WatchBooksRequest(shelf=1, count=2), metadata=self.MD)
        self.check_initial(it.initial_metadata())
        self.assertEqual(len(list(it)), 2)
        self.assertIn(("x-bookstore", "1"), it.trailing_metadata())

    def test_client_streaming_and_bidi(self):
        _, call = self.stub.BulkCreateBooks.with_call(iter([]), metadata=self.MD)
        self.check_initial(call.initial_metadata())
        self.assertIn(("x-bookstore", "1"), call.trailing_metadata())
        it = self.stub.Chat(iter([pb.ChatMessage(text="hi")]), metadata=self.MD)
        self.check_initial(it.initial_metadata())
        self.assertEqual([m.text for m in it], ["hi"])
        self.assertIn(("x-bookstore", "1"), it.trailing_metadata())

    def test_echo_metadata(self):
        r = self.stub.Echo(pb.EchoRequest(message="m", echo_metadata=True),
                           metadata=self.MD + [("x-multi", "a"), ("x-multi", "b")])
        self.assertEqual(r.metadata["x-request-id"], "req-42")
        self.assertEqual(r.metadata["x-other"], "not echoed")
        self.assertEqual(base64.b64decode(r.metadata["x-echo-blob-bin"]), b"\x00\xffbin")
        self.assertEqual(r.metadata["x-multi"], "a, b")
        self.assertIn("grpc-python", r.metadata["user-agent"])


class TestMetadataGrpcForbids(unittest.TestCase):
    """Issue 14: metadata values gRPC's ASCII metadata forbids (a tab, bytes
    over 0x7E) reach the server from raw HTTP/2 clients; echoing one back
    made grpc_call_start_batch fail and the server abort. They are ignored."""

    def test_forbidden_values_are_not_echoed(self):
        srv = BookstoreServer(threads=1).start()
        try:
            msg = pb.EchoRequest(message="m", echo_metadata=True).SerializeToString()
            body = b"\0" + len(msg).to_bytes(4, "big") + msg
            for name, value in ((b"x-echo-tab", b"a\tb"), (b"x-echo-utf8", b"caf\xc3\xa9"),
                                (b"x-echo-del", b"a\x7fb")):
                head, data, trailers, reset = h2_call(
                    srv.port, "/bookstore.v1.Bookstore/Echo",
                    [("content-type", "application/grpc"), ("te", "trailers"),
                     (b"x-echo-ok", b"fine"), (name, value)], body)
                self.assertIsNone(reset, name)
                self.assertEqual(trailers.get("grpc-status"), "0", (name, head, trailers))
                self.assertEqual(head.get("x-echo-ok"), "fine")
                self.assertNotIn(name.decode(), head)
            # still serving
            self.assertEqual(pb_grpc.BookstoreStub(srv.channel()).Echo(
                pb.EchoRequest(message="alive")).message, "alive")
        finally:
            self.assertEqual(srv.stop(), 0, srv.stderr)


class TestServerStreaming(Base):
    def test_watch_books(self):
        s = self.new_shelf()
        for t in ("one", "two"):
            self.stub.CreateBook(pb.CreateBookRequest(shelf=s.id,
                                                      book=pb.Book(title=t, author="a")))
        start = time.monotonic()
        msgs = list(self.stub.WatchBooks(pb.WatchBooksRequest(shelf=s.id, interval_ms=30,
                                                              count=5)))
        elapsed = time.monotonic() - start
        self.assertEqual([m.sequence for m in msgs], [1, 2, 3, 4, 5])
        self.assertEqual([m.book.title for m in msgs], ["one", "two", "one", "two", "one"])
        self.assertGreaterEqual(elapsed, 0.11)  # 4 intervals between 5 messages
        self.assertLess(elapsed, 5)
        # count 0: each book once, as fast as possible
        self.assertEqual(len(list(self.stub.WatchBooks(pb.WatchBooksRequest(shelf=s.id)))), 2)

    def test_messages_arrive_one_by_one(self):
        it = self.stub.WatchBooks(pb.WatchBooksRequest(shelf=1, interval_ms=200, count=3))
        t0 = time.monotonic()
        first = next(it)
        self.assertEqual(first.sequence, 1)
        self.assertLess(time.monotonic() - t0, 0.18)  # not held back until the end
        self.assertEqual([m.sequence for m in it], [2, 3])

    def test_errors_before_and_after_first_message(self):
        e = self.assertCode(grpc.StatusCode.NOT_FOUND, self.stub.WatchBooks,
                            pb.WatchBooksRequest(shelf=777777))
        self.assertIsNotNone(status_details(e))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.stub.WatchBooks,
                        pb.WatchBooksRequest(shelf=1, interval_ms=60001))
        it = self.stub.WatchBooks(pb.WatchBooksRequest(shelf=1, count=10, abort_after=2))
        got = []
        with self.assertRaises(grpc.RpcError) as cm:
            for m in it:
                got.append(m.sequence)
        self.assertEqual(got, [1, 2])
        self.assertEqual(cm.exception.code(), grpc.StatusCode.ABORTED)

    def test_shelf_deleted_mid_stream(self):
        s = self.new_shelf()
        self.stub.CreateBook(pb.CreateBookRequest(shelf=s.id, book=pb.Book(title="t",
                                                                           author="a")))
        it = self.stub.WatchBooks(pb.WatchBooksRequest(shelf=s.id, interval_ms=50, count=100))
        self.assertEqual(next(it).sequence, 1)
        self.stub.DeleteShelf(pb.DeleteShelfRequest(shelf=s.id, force=True))
        with self.assertRaises(grpc.RpcError) as cm:
            list(it)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_watch_shelf_reports_changes(self):
        s = self.new_shelf()
        it = self.stub.WatchShelf(pb.WatchShelfRequest(shelf=s.id, max_events=3))
        it.initial_metadata()  # the watch is in place once headers arrive
        other = self.new_shelf()
        self.stub.CreateBook(pb.CreateBookRequest(shelf=other.id,
                                                  book=pb.Book(title="elsewhere", author="a")))
        b = self.stub.CreateBook(pb.CreateBookRequest(shelf=s.id,
                                                      book=pb.Book(title="new", author="a")))
        self.stub.DeleteBook(pb.DeleteBookRequest(shelf=s.id, book=b.id))
        self.stub.BulkCreateBooks(iter([pb.CreateBookRequest(
            shelf=s.id, book=pb.Book(title="bulk", author="a"))]))
        evs = list(it)
        self.assertEqual([e.type for e in evs], [pb.ShelfEvent.BOOK_CREATED,
                                                 pb.ShelfEvent.BOOK_DELETED,
                                                 pb.ShelfEvent.BOOK_CREATED])
        self.assertEqual([e.book.title for e in evs], ["new", "new", "bulk"])
        self.assertTrue(all(e.shelf == s.id and e.event_time.seconds > 0 for e in evs))
        self.assertEqual(it.code(), grpc.StatusCode.OK)

    def test_watch_shelf_ends_when_shelf_deleted(self):
        s = self.new_shelf()
        it = self.stub.WatchShelf(pb.WatchShelfRequest(shelf=s.id))
        it.initial_metadata()
        self.stub.DeleteShelf(pb.DeleteShelfRequest(shelf=s.id))
        evs = list(it)
        self.assertEqual([e.type for e in evs], [pb.ShelfEvent.SHELF_DELETED])
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.stub.WatchShelf,
                        pb.WatchShelfRequest(shelf=s.id))


class TestClientStreaming(Base):
    def test_bulk_create(self):
        s = self.new_shelf()
        reqs = [pb.CreateBookRequest(shelf=s.id, book=pb.Book(title="b%d" % i, author="a",
                                                              tags=["bulk"]))
                for i in range(50)]
        r = self.stub.BulkCreateBooks(iter(reqs))
        self.assertEqual([b.title for b in r.books], ["b%d" % i for i in range(50)])
        ids = [b.id for b in r.books]
        self.assertEqual(ids, sorted(ids))
        listed = self.stub.ListBooks(pb.ListBooksRequest(shelf=s.id, page_size=100))
        self.assertEqual([b.id for b in listed.books], ids)
        self.assertEqual(len(self.stub.BulkCreateBooks(iter([])).books), 0)

    def test_bulk_create_is_all_or_nothing(self):
        s = self.new_shelf()
        good = [pb.CreateBookRequest(shelf=s.id, book=pb.Book(title="g%d" % i, author="a"))
                for i in range(3)]
        bad_cases = [
            (good + [pb.CreateBookRequest(shelf=s.id, book=pb.Book(title="no author"))],
             grpc.StatusCode.INVALID_ARGUMENT),
            (good + [pb.CreateBookRequest(shelf=999999, book=pb.Book(title="x", author="a"))],
             grpc.StatusCode.NOT_FOUND),
            (good + [good[0]], grpc.StatusCode.ALREADY_EXISTS),
        ]
        for reqs, code in bad_cases:
            self.assertCode(code, self.stub.BulkCreateBooks, iter(reqs))
        self.assertEqual(self.stub.GetShelf(pb.GetShelfRequest(shelf=s.id)).book_count, 0)

    def test_bulk_limit(self):
        s = self.new_shelf()
        reqs = (pb.CreateBookRequest(shelf=s.id, book=pb.Book(title="t%d" % i, author="a"))
                for i in range(1001))
        self.assertCode(grpc.StatusCode.RESOURCE_EXHAUSTED, self.stub.BulkCreateBooks, reqs)
        self.assertEqual(self.stub.GetShelf(pb.GetShelfRequest(shelf=s.id)).book_count, 0)

    def test_error_ends_call_while_client_still_sends(self):
        s = self.new_shelf()

        def forever():
            yield pb.CreateBookRequest(shelf=s.id, book=pb.Book(title=""))
            while True:  # the server must end the call without reading all this
                yield pb.CreateBookRequest(shelf=s.id, book=pb.Book(title="t", author="a"))
                time.sleep(0.01)

        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.stub.BulkCreateBooks, forever(),
                        timeout=10)


class TestBidi(Base):
    def test_chat_in_order(self):
        msgs = [pb.ChatMessage(text="m%d" % i, **{"from": "me"}) for i in range(20)]
        replies = list(self.stub.Chat(iter(msgs)))
        self.assertEqual([r.text for r in replies], ["m%d" % i for i in range(20)])
        self.assertEqual([r.sequence for r in replies], list(range(1, 21)))
        self.assertTrue(all(getattr(r, "from") == "bookstore" for r in replies))

    def test_chat_is_interactive(self):
        # Each reply arrives before the next message is even sent.
        q = queue.Queue()

        def gen():
            while True:
                m = q.get()
                if m is None:
                    return
                yield m

        it = self.stub.Chat(gen())
        for i in range(5):
            q.put(pb.ChatMessage(text="ping %d" % i))
            r = next(it)
            self.assertEqual(r.text, "ping %d" % i)
            self.assertEqual(r.sequence, i + 1)
        q.put(None)
        self.assertEqual(list(it), [])
        self.assertEqual(it.code(), grpc.StatusCode.OK)

    def test_chat_replies_carry_room_and_sender(self):
        msgs = [pb.ChatMessage(text="t%d" % i, room="lobby", **{"from": "ann"}) for i in range(2)]
        replies = list(self.stub.Chat(iter(msgs)))
        self.assertEqual([(r.text, r.room, r.to, getattr(r, "from")) for r in replies],
                         [("t0", "lobby", "ann", "bookstore"), ("t1", "lobby", "ann", "bookstore")])

    def test_chat_error(self):
        it = self.stub.Chat(iter([pb.ChatMessage(text="ok"), pb.ChatMessage(text="")]))
        self.assertEqual(next(it).text, "ok")
        with self.assertRaises(grpc.RpcError) as cm:
            next(it)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)


class TestCovers(Base):
    """google.api.HttpBody both ways: GetShelfCover, PutShelfCover, DownloadShelfCover."""

    def put(self, shelf, data, ctype):
        return self.stub.PutShelfCover(pb.PutShelfCoverRequest(
            shelf=shelf, cover=httpbody_pb2.HttpBody(content_type=ctype, data=data)))

    def test_default_cover_is_svg_of_the_theme(self):
        s = self.stub.CreateShelf(pb.CreateShelfRequest(
            shelf=pb.Shelf(theme=uniq("Tom & <Jerry>"))))
        c = self.stub.GetShelfCover(pb.GetShelfCoverRequest(shelf=s.id))
        self.assertEqual(c.content_type, "image/svg+xml")
        self.assertTrue(c.data.startswith(b"<svg "), c.data)
        self.assertIn(b">Tom &amp; &lt;Jerry&gt;-", c.data)  # escaped
        self.assertEqual((s.cover_type, s.cover_size), ("", 0))

    def test_put_then_get_raw_bytes(self):
        s = self.new_shelf()
        data = bytes(range(256)) * 5 + b"\x00\r\n"
        got = self.put(s.id, data, "image/png")
        self.assertEqual((got.id, got.cover_type, got.cover_size), (s.id, "image/png", len(data)))
        self.assertEqual(self.stub.GetShelf(pb.GetShelfRequest(shelf=s.id)).cover_type,
                         "image/png")
        c = self.stub.GetShelfCover(pb.GetShelfCoverRequest(shelf=s.id))
        self.assertEqual((c.content_type, c.data), ("image/png", data))
        # a second put replaces it
        self.put(s.id, b"plain", "text/plain; charset=utf-8")
        c = self.stub.GetShelfCover(pb.GetShelfCoverRequest(shelf=s.id))
        self.assertEqual((c.content_type, c.data), ("text/plain; charset=utf-8", b"plain"))

    def test_put_errors(self):
        s = self.new_shelf()
        for data, ctype, field in ((b"x", "", "cover.content_type"),
                                   (b"x", "nosubtype", "cover.content_type"),
                                   (b"x", "text/plain\r\nx-evil: 1", "cover.content_type"),
                                   (b"x", "a/" + "b" * 200, "cover.content_type"),
                                   (b"", "text/plain", "cover.data"),
                                   (b"x" * (1024 * 1024 + 1), "text/plain", "cover.data")):
            e = self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.put, s.id, data, ctype)
            br = error_details_pb2.BadRequest()
            self.assertTrue(status_details(e).details[0].Unpack(br))
            self.assertEqual(br.field_violations[0].field, field, ctype)
        self.assertEqual(self.put(s.id, b"y" * (1024 * 1024), "text/plain").cover_size,
                         1024 * 1024)
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.put, 987654, b"x", "text/plain")
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.stub.GetShelfCover,
                        pb.GetShelfCoverRequest(shelf=987654))

    def test_download_in_chunks(self):
        s = self.new_shelf()
        data = os.urandom(10000)
        self.put(s.id, data, "application/octet-stream")
        chunks = list(self.stub.DownloadShelfCover(
            pb.DownloadShelfCoverRequest(shelf=s.id, chunk_size=4096)))
        self.assertEqual([len(c.data) for c in chunks], [4096, 4096, 1808])
        self.assertEqual(b"".join(c.data for c in chunks), data)
        self.assertTrue(all(c.content_type == "application/octet-stream" for c in chunks))
        # default chunk size 1024, default cover
        chunks = list(self.stub.DownloadShelfCover(pb.DownloadShelfCoverRequest(shelf=1)))
        whole = self.stub.GetShelfCover(pb.GetShelfCoverRequest(shelf=1))
        self.assertEqual(b"".join(c.data for c in chunks), whole.data)

    def test_upload_in_pieces(self):
        s = self.new_shelf()
        data = os.urandom(100000)
        pieces = [pb.UploadShelfCoverRequest(
            shelf=s.id, chunk=httpbody_pb2.HttpBody(
                content_type="image/png" if i == 0 else "", data=data[i:i + 30000]))
            for i in range(0, len(data), 30000)]
        got = self.stub.UploadShelfCover(iter(pieces))
        self.assertEqual((got.id, got.cover_type, got.cover_size), (s.id, "image/png", len(data)))
        c = self.stub.GetShelfCover(pb.GetShelfCoverRequest(shelf=s.id))
        self.assertEqual((c.content_type, c.data), ("image/png", data))

    def test_upload_errors(self):
        s = self.new_shelf()

        def piece(shelf, data, ct="text/plain"):
            return pb.UploadShelfCoverRequest(
                shelf=shelf, chunk=httpbody_pb2.HttpBody(content_type=ct, data=data))
        e = self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.stub.UploadShelfCover,
                            iter([piece(s.id, b"a"), piece(s.id + 1, b"b")]))
        self.assertIn("same shelf", e.details())
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.stub.UploadShelfCover,
                        iter([piece(s.id, b"a" * 600000), piece(s.id, b"b" * 600000)]))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.stub.UploadShelfCover, iter([]))
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.stub.UploadShelfCover,
                        iter([piece(987654, b"a")]))
        # nothing was stored by the failed uploads
        c = self.stub.GetShelfCover(pb.GetShelfCoverRequest(shelf=s.id))
        self.assertEqual(c.content_type, "image/svg+xml")

    def test_download_errors(self):
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.stub.DownloadShelfCover,
                        pb.DownloadShelfCoverRequest(shelf=987654))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.stub.DownloadShelfCover,
                        pb.DownloadShelfCoverRequest(shelf=1, chunk_size=65537))
        it = self.stub.DownloadShelfCover(
            pb.DownloadShelfCoverRequest(shelf=1, chunk_size=10, abort_after=2))
        self.assertEqual(len(next(it).data), 10)
        self.assertEqual(len(next(it).data), 10)
        with self.assertRaises(grpc.RpcError) as cm:
            next(it)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.ABORTED)

    def test_download_paced_and_cancelled(self):
        it = self.stub.DownloadShelfCover(
            pb.DownloadShelfCoverRequest(shelf=1, chunk_size=1, interval_ms=50))
        t0 = time.monotonic()
        next(it)
        next(it)
        next(it)
        self.assertGreater(time.monotonic() - t0, 0.08)
        it.cancel()
        self.assertEqual(it.code(), grpc.StatusCode.CANCELLED)


class TestTls(unittest.TestCase):
    """--tls-cert/--tls-key: the service over TLS only."""

    def test_tls_only(self):
        import tempfile
        d = tempfile.mkdtemp(prefix="bs-tls-")
        self.addCleanup(shutil.rmtree, d, True)
        crt, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        key, "-out", crt, "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        srv = BookstoreServer(threads=1, extra_args=("--tls-cert", crt, "--tls-key", key)).start()
        try:
            with open(crt, "rb") as f:
                creds = grpc.ssl_channel_credentials(root_certificates=f.read())
            with grpc.secure_channel(srv.address, creds) as ch:
                s = pb_grpc.BookstoreStub(ch).GetShelf(pb.GetShelfRequest(shelf=1), timeout=10)
                self.assertEqual(s.theme, "Fiction")
            with grpc.insecure_channel(srv.address) as ch:  # no plaintext
                with self.assertRaises(grpc.RpcError) as cm:
                    pb_grpc.BookstoreStub(ch).GetShelf(pb.GetShelfRequest(shelf=1), timeout=2)
                self.assertIn(cm.exception.code(), (grpc.StatusCode.UNAVAILABLE,
                                                    grpc.StatusCode.DEADLINE_EXCEEDED))
        finally:
            self.assertEqual(srv.stop(), 0, srv.stderr)
        # both files or neither; unreadable files refused
        for extra in (("--tls-cert", crt), ("--tls-cert", crt, "--tls-key", d + "/none")):
            p = subprocess.run([srv.args[0], "--port", "0"] + list(extra), capture_output=True,
                               timeout=10)
            self.assertIn(p.returncode, (1, 2), p)


class TestDeadlinesAndCancellation(Base):
    def test_delayed_echo(self):
        t0 = time.monotonic()
        self.assertEqual(self.stub.Echo(pb.EchoRequest(message="late", delay_ms=200)).message,
                         "late")
        self.assertGreaterEqual(time.monotonic() - t0, 0.19)

    def test_deadline_exceeded(self):
        t0 = time.monotonic()
        self.assertCode(grpc.StatusCode.DEADLINE_EXCEEDED, self.stub.Echo,
                        pb.EchoRequest(message="x", delay_ms=5000), timeout=0.2)
        self.assertLess(time.monotonic() - t0, 2)
        self.assertCode(grpc.StatusCode.DEADLINE_EXCEEDED, self.stub.WatchBooks,
                        pb.WatchBooksRequest(shelf=1, interval_ms=100, count=100), timeout=0.3)
        self.assertEqual(self.stub.Echo(pb.EchoRequest(message="still here")).message,
                         "still here")

    def test_deadline_fails_a_delayed_error_too(self):
        self.assertCode(grpc.StatusCode.DEADLINE_EXCEEDED, self.stub.Echo,
                        pb.EchoRequest(delay_ms=3000, fail_code=13), timeout=0.2)

    def test_cancel_each_call_type(self):
        for _ in range(20):
            f = self.stub.Echo.future(pb.EchoRequest(message="x", delay_ms=2000))
            time.sleep(0.005)
            f.cancel()
            self.assertTrue(f.cancelled())

            it = self.stub.WatchBooks(pb.WatchBooksRequest(shelf=1, interval_ms=20, count=1000))
            next(it)
            it.cancel()

            s = self.stub.WatchShelf(pb.WatchShelfRequest(shelf=1))
            s.initial_metadata()
            s.cancel()

            q = queue.Queue()
            chat = self.stub.Chat(iter(q.get, None))
            q.put(pb.ChatMessage(text="a"))
            next(chat)
            chat.cancel()
            q.put(None)

            q2 = queue.Queue()
            q2.put(pb.CreateBookRequest(shelf=1, book=pb.Book(title="never", author="a")))
            bulk = self.stub.BulkCreateBooks.future(iter(q2.get, None))
            time.sleep(0.005)
            bulk.cancel()
            q2.put(None)
        # Everything was released: many fresh calls still work.
        self.assertEqual(self.stub.Echo(pb.EchoRequest(message="ok")).message, "ok")
        self.assertGreater(len(self.stub.ListShelves(pb.ListShelvesRequest()).shelves), 1)

    def test_cut_bulk_stream_creates_nothing(self):
        # A client stream that is cancelled or whose connection drops did
        # not end: its books must not be created (C core reports both like
        # a half-close; the server asks grpc_call_failed_before_recv_message).
        s = self.new_shelf()
        for i in range(10):
            q = queue.Queue()
            q.put(pb.CreateBookRequest(shelf=s.id, book=pb.Book(title="c%d" % i, author="a")))
            f = self.stub.BulkCreateBooks.future(iter(q.get, None))
            time.sleep(0.01 * (i % 3))
            f.cancel()
            q.put(None)

            ch = SRV.channel()
            q = queue.Queue()
            q.put(pb.CreateBookRequest(shelf=s.id, book=pb.Book(title="d%d" % i, author="a")))
            f = pb_grpc.BookstoreStub(ch).BulkCreateBooks.future(iter(q.get, None))
            time.sleep(0.02)
            ch.close()
            q.put(None)
        time.sleep(0.2)
        self.assertEqual(list(self.stub.ListBooks(pb.ListBooksRequest(shelf=s.id)).books), [])

    def test_client_goes_away_mid_stream(self):
        ch = SRV.channel()
        stub = pb_grpc.BookstoreStub(ch)
        it = stub.WatchBooks(pb.WatchBooksRequest(shelf=1, interval_ms=10, count=10000))
        next(it)
        ch.close()  # the connection drops
        self.assertEqual(self.stub.Echo(pb.EchoRequest(message="ok")).message, "ok")

    def test_concurrent_calls(self):
        errors = []

        def worker(n):
            try:
                for i in range(50):
                    m = "w%d-%d" % (n, i)
                    if self.stub.Echo(pb.EchoRequest(message=m)).message != m:
                        errors.append(m)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

        ts = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual(errors, [])


class TestShutdown(unittest.TestCase):
    def test_graceful_sigterm(self):
        srv = BookstoreServer(threads=2, grace_ms=3000).start()
        try:
            stub = pb_grpc.BookstoreStub(srv.channel())
            watch = stub.WatchShelf(pb.WatchShelfRequest(shelf=1))
            watch.initial_metadata()
            slow = stub.Echo.future(pb.EchoRequest(message="finishing", delay_ms=500))
            time.sleep(0.1)
            srv.proc.terminate()
            # The call in flight completes; the watch ends with UNAVAILABLE.
            self.assertEqual(slow.result(timeout=5).message, "finishing")
            with self.assertRaises(grpc.RpcError) as cm:
                list(watch)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        finally:
            t0 = time.monotonic()
            rc = srv.stop()
        self.assertEqual(rc, 0, srv.stderr)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertNotIn("calls alive", srv.stderr)

    def test_grace_period_cancels_stragglers(self):
        srv = BookstoreServer(threads=1, grace_ms=300).start()
        stub = pb_grpc.BookstoreStub(srv.channel())
        q = queue.Queue()
        chat = stub.Chat(iter(q.get, None))  # an open chat never ends by itself
        q.put(pb.ChatMessage(text="hello"))
        self.assertEqual(next(chat).text, "hello")
        t0 = time.monotonic()
        srv.proc.terminate()
        with self.assertRaises(grpc.RpcError):
            next(chat)
        q.put(None)
        rc = srv.stop()
        self.assertEqual(rc, 0, srv.stderr)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIn("cancelling", srv.stderr)


class TestDescriptorSet(unittest.TestCase):
    """bookstore.pb holds what Portico needs: the service with its bindings."""

    def rules(self):
        fds = descriptor_pb2.FileDescriptorSet()
        with open(PB, "rb") as f:
            fds.ParseFromString(f.read())
        names = [f.name for f in fds.file]
        for need in ("bookstore.proto", "google/api/annotations.proto", "google/api/http.proto",
                     "google/protobuf/timestamp.proto", "google/protobuf/empty.proto",
                     "google/api/httpbody.proto",
                     "google/rpc/status.proto", "google/rpc/error_details.proto"):
            self.assertIn(need, names)
        fd = next(f for f in fds.file if f.name == "bookstore.proto")
        self.assertEqual(fd.package, "bookstore.v1")
        self.assertTrue(fd.HasField("source_code_info"))
        svc = fd.service[0]
        self.assertEqual(svc.name, "Bookstore")
        out = {}
        for m in svc.method:
            rule = m.options.Extensions[annotations_pb2.http]
            out[m.name] = (m, rule)
        return out

    def test_bindings(self):
        r = self.rules()

        def b(rule):
            kind = rule.WhichOneof("pattern")
            return (kind, getattr(rule, kind), rule.body, rule.response_body)

        self.assertEqual(b(r["ListShelves"][1]), ("get", "/v1/shelves", "", ""))
        self.assertEqual(b(r["CreateShelf"][1]), ("post", "/v1/shelves", "shelf", ""))
        self.assertEqual(b(r["GetShelf"][1]), ("get", "/v1/shelves/{shelf}", "", ""))
        self.assertEqual(b(r["DeleteShelf"][1]), ("delete", "/v1/shelves/{shelf}", "", ""))
        self.assertEqual(b(r["ListBooks"][1]), ("get", "/v1/shelves/{shelf}/books", "", ""))
        self.assertEqual(b(r["CreateBook"][1]),
                         ("post", "/v1/shelves/{shelf}/books", "book", ""))
        self.assertEqual(b(r["GetBook"][1]),
                         ("get", "/v1/shelves/{shelf}/books/{book}", "", ""))
        self.assertEqual([b(x) for x in r["GetBook"][1].additional_bindings],
                         [("get", "/v1/books/{book}", "", "")])
        self.assertEqual(b(r["DeleteBook"][1]),
                         ("delete", "/v1/shelves/{shelf}/books/{book}", "", ""))
        self.assertEqual(b(r["WatchShelf"][1]), ("get", "/v1/shelves/{shelf}:watch", "", ""))
        self.assertEqual(b(r["WatchBooks"][1]),
                         ("get", "/v1/shelves/{shelf}/books:watch", "", ""))
        self.assertEqual(b(r["BulkCreateBooks"][1]), ("post", "/v1/books:bulkCreate", "*", ""))
        self.assertEqual([b(x) for x in r["BulkCreateBooks"][1].additional_bindings],
                         [("post", "/v1/shelves/{shelf}/books:bulkCreate", "book", "")])
        self.assertEqual(b(r["Chat"][1]), ("post", "/v1/chat", "*", ""))
        self.assertEqual([b(x) for x in r["Chat"][1].additional_bindings],
                         [("post", "/v1/rooms/{room}/chat", "text", "")])
        self.assertEqual(b(r["GetShelfCover"][1]), ("get", "/v1/shelves/{shelf}/cover", "", ""))
        self.assertEqual(b(r["PutShelfCover"][1]),
                         ("put", "/v1/shelves/{shelf}/cover", "cover", ""))
        self.assertEqual(b(r["DownloadShelfCover"][1]),
                         ("get", "/v1/shelves/{shelf}/cover:download", "", ""))
        self.assertEqual(b(r["UploadShelfCover"][1]),
                         ("post", "/v1/shelves/{shelf}/cover:upload", "chunk", ""))
        self.assertEqual(r["GetShelfCover"][0].output_type, ".google.api.HttpBody")
        self.assertEqual(b(r["Echo"][1]), ("post", "/v1/echo", "*", ""))
        self.assertEqual([b(x) for x in r["Echo"][1].additional_bindings],
                         [("get", "/v1/echo/{message}", "", "message")])

    def test_streaming_flags(self):
        r = self.rules()
        flags = {n: (m.client_streaming, m.server_streaming) for n, (m, _) in r.items()}
        self.assertEqual(flags["WatchShelf"], (False, True))
        self.assertEqual(flags["WatchBooks"], (False, True))
        self.assertEqual(flags["BulkCreateBooks"], (True, False))
        self.assertEqual(flags["Chat"], (True, True))
        self.assertEqual(flags["DownloadShelfCover"], (False, True))
        self.assertEqual(flags["UploadShelfCover"], (True, False))
        self.assertEqual(sum(1 for f in flags.values() if f == (False, False)), 11)


TRANSCODE = os.path.join(os.path.dirname(os.environ.get("PORTICO_BIN", "/nonexistent")),
                         "portico-transcode")


@unittest.skipUnless(os.access(TRANSCODE, os.X_OK), "portico-transcode not built")
class TestWithTranscoderCli(Base):
    """bookstore.pb as Portico's transcoder reads it, against the live service:
    JSON -> protobuf (portico-transcode) -> bookstore-server -> JSON."""

    def transcode(self, *args, data=b""):
        r = subprocess.run([TRANSCODE, "-d", PB] + list(args), input=data,
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return r.stdout

    def call(self, method, in_type, out_type, body):
        req = self.transcode("--type", in_type, "--to-binary", data=json.dumps(body).encode())
        raw = SRV.channel().unary_unary("/bookstore.v1.Bookstore/" + method)
        return json.loads(self.transcode("--type", out_type, "--to-json", data=raw(req)))

    def test_list_shows_every_binding(self):
        out = self.transcode("--list").decode()
        for line in ("GET /v1/shelves/{shelf}/books/{book}",
                     "GET /v1/books/{book}  (additional binding)",
                     "POST /v1/books:bulkCreate  body=*",
                     "GET /v1/echo/{message}  response_body=message"):
            self.assertIn(line, out)

    def test_match_query_parameters(self):
        out = self.transcode("--match", "GET", "/v1/shelves/1/books?page_size=2&"
                             "filter.genre=FICTION&filter.tags=a&filter.tags=b").decode()
        self.assertIn('{"shelf":"1","pageSize":2,"filter":{"genre":"FICTION","tags":["a","b"]}}',
                      out)

    def test_json_round_trip_through_the_service(self):
        theme = uniq("json")
        shelf = self.call("CreateShelf", "bookstore.v1.CreateShelfRequest", "bookstore.v1.Shelf",
                          {"shelf": {"theme": theme, "labels": {"floor": "9"}}})
        self.assertEqual(shelf["theme"], theme)
        self.assertEqual(shelf["labels"], {"floor": "9"})
        self.assertRegex(shelf["createTime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        book = self.call("CreateBook", "bookstore.v1.CreateBookRequest", "bookstore.v1.Book",
                         {"shelf": shelf["id"], "book": {"title": "T", "author": "A",
                                                         "genre": "HISTORY", "tags": ["x"]}})
        self.assertEqual((book["shelf"], book["genre"], book["tags"]),
                         (shelf["id"], "HISTORY", ["x"]))
        listed = self.call("ListBooks", "bookstore.v1.ListBooksRequest",
                           "bookstore.v1.ListBooksResponse", {"shelf": shelf["id"]})
        self.assertEqual([b["id"] for b in listed["books"]], [book["id"]])
        self.assertEqual(self.call("DeleteShelf", "bookstore.v1.DeleteShelfRequest",
                                   "google.protobuf.Empty", {"shelf": shelf["id"], "force": True}),
                         {})


if __name__ == "__main__":
    unittest.main()
