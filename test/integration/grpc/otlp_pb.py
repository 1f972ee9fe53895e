"""
otlp_pb.py -- decodes OTLP/HTTP protobuf trace exports (ExportTraceServiceRequest) for
the tests' collectors, with Debian's python3-protobuf: the message classes are built at
run time from a descriptor written here (the field numbers and types of the OTLP wire
format; only the fields Portico sends, plus trace_state and flags), and the decoded
message is turned into the dict the OTLP/HTTP JSON encoding gives (ids as hex, 64-bit
numbers as strings), so a test reads both encodings the same way. Fields the
descriptor does not know make the decode fail: a wrong field number or wire type in
Portico's encoder shows up as an error, not as a silently missing value.
"""
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
_FIELDS = {
    "Request": [("resource_spans", 1, F.TYPE_MESSAGE, ".otlptest.ResourceSpans", True)],
    "ResourceSpans": [("resource", 1, F.TYPE_MESSAGE, ".otlptest.Resource", False),
                      ("scope_spans", 2, F.TYPE_MESSAGE, ".otlptest.ScopeSpans", True),
                      ("schema_url", 3, F.TYPE_STRING, None, False)],
    "Resource": [("attributes", 1, F.TYPE_MESSAGE, ".otlptest.KeyValue", True)],
    "ScopeSpans": [("scope", 1, F.TYPE_MESSAGE, ".otlptest.Scope", False),
                   ("spans", 2, F.TYPE_MESSAGE, ".otlptest.Span", True)],
    "Scope": [("name", 1, F.TYPE_STRING, None, False), ("version", 2, F.TYPE_STRING, None, False)],
    "Span": [("trace_id", 1, F.TYPE_BYTES, None, False), ("span_id", 2, F.TYPE_BYTES, None, False),
             ("trace_state", 3, F.TYPE_STRING, None, False),
             ("parent_span_id", 4, F.TYPE_BYTES, None, False), ("name", 5, F.TYPE_STRING, None, False),
             ("kind", 6, F.TYPE_INT32, None, False),
             ("start_time_unix_nano", 7, F.TYPE_FIXED64, None, False),
             ("end_time_unix_nano", 8, F.TYPE_FIXED64, None, False),
             ("attributes", 9, F.TYPE_MESSAGE, ".otlptest.KeyValue", True),
             ("status", 15, F.TYPE_MESSAGE, ".otlptest.Status", False),
             ("flags", 16, F.TYPE_FIXED32, None, False)],
    "KeyValue": [("key", 1, F.TYPE_STRING, None, False), ("value", 2, F.TYPE_MESSAGE, ".otlptest.AnyValue", False)],
    "AnyValue": [("string_value", 1, F.TYPE_STRING, None, False), ("bool_value", 2, F.TYPE_BOOL, None, False),
                 ("int_value", 3, F.TYPE_INT64, None, False), ("double_value", 4, F.TYPE_DOUBLE, None, False)],
    "Status": [("message", 2, F.TYPE_STRING, None, False), ("code", 3, F.TYPE_INT32, None, False)],
}


def _classes():
    fd = descriptor_pb2.FileDescriptorProto(name="otlptest.proto", package="otlptest", syntax="proto3")
    for mname, fields in _FIELDS.items():
        m = fd.message_type.add(name=mname)
        if mname == "AnyValue":
            m.oneof_decl.add(name="value")
        for name, num, typ, tname, rep in fields:
            f = m.field.add(name=name, number=num, type=typ,
                            label=F.LABEL_REPEATED if rep else F.LABEL_OPTIONAL)
            if tname:
                f.type_name = tname
            if mname == "AnyValue":
                f.oneof_index = 0
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    factory = message_factory.MessageFactory(pool)
    return {n: factory.GetPrototype(pool.FindMessageTypeByName("otlptest." + n)) for n in _FIELDS}


_C = _classes()


def _no_unknown(msg):
    if msg.UnknownFields() and len(msg.UnknownFields()):
        raise ValueError("unknown fields in %s" % msg.DESCRIPTOR.name)
    for fd, v in msg.ListFields():
        if fd.type == F.TYPE_MESSAGE:
            for sub in (v if fd.label == F.LABEL_REPEATED else [v]):
                _no_unknown(sub)


def _any(v):
    which = v.WhichOneof("value")
    if which == "string_value":
        return {"stringValue": v.string_value}
    if which == "int_value":
        return {"intValue": str(v.int_value)}
    if which == "bool_value":
        return {"boolValue": v.bool_value}
    if which == "double_value":
        return {"doubleValue": v.double_value}
    raise ValueError("AnyValue without a value")


def _attrs(kvs):
    return [{"key": kv.key, "value": _any(kv.value)} for kv in kvs]


def decode(body):
    """ExportTraceServiceRequest bytes -> the OTLP/HTTP JSON shape (a dict)."""
    req = _C["Request"]()
    req.ParseFromString(body)
    _no_unknown(req)
    out = {"resourceSpans": []}
    for rs in req.resource_spans:
        scopes = []
        for ss in rs.scope_spans:
            spans = []
            for s in ss.spans:
                if len(s.trace_id) != 16 or len(s.span_id) != 8:
                    raise ValueError("bad id lengths")
                d = {"traceId": s.trace_id.hex(), "spanId": s.span_id.hex(), "name": s.name, "kind": s.kind,
                     "startTimeUnixNano": str(s.start_time_unix_nano),
                     "endTimeUnixNano": str(s.end_time_unix_nano), "attributes": _attrs(s.attributes)}
                if s.parent_span_id:
                    if len(s.parent_span_id) != 8:
                        raise ValueError("bad parent id length")
                    d["parentSpanId"] = s.parent_span_id.hex()
                if s.HasField("status"):
                    d["status"] = {"code": s.status.code, "message": s.status.message}
                spans.append(d)
            scopes.append({"scope": {"name": ss.scope.name}, "spans": spans})
        out["resourceSpans"].append({"resource": {"attributes": _attrs(rs.resource.attributes)},
                                     "scopeSpans": scopes})
    return out
