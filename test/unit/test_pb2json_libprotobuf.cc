// test_pb2json_libprotobuf.cc -- differential test of pt_pb_to_json against
// libprotobuf (the JSON engine inside Envoy's transcoder).
//
// Random messages of the test schema (test/proto/xtest.proto) are serialized
// by libprotobuf and converted to JSON by both engines. Our JSON must parse
// back, with libprotobuf's own JsonToBinaryString, to the original message (or
// to what libprotobuf's own JSON parses to, where libprotobuf's printer and
// parser disagree with each other), and both must accept or reject the same
// inputs. Texts may differ (shortest float forms, field order).
//
// Usage: test_pb2json_libprotobuf SET.pb [ITERATIONS] [-v]
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <google/protobuf/util/type_resolver_util.h>
#include <google/protobuf/timestamp.pb.h>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
extern "C" {
#include "portico/transcoder/json.h"
}
using namespace google::protobuf;
static std::mt19937_64 rng(42);
static bool no_null; // libprotobuf 3.21 drops null members of a Struct on output
static int R(int n)
{
    return (int)(rng() % n);
}
static std::string rstr()
{
    static const char *pool[] = {"",   "a", "hello", "h\xc3\xa9", "q\"\\\n", "\xf0\x9f\x98\x80",
                                 "x y"};
    return pool[R(7)];
}
static void fill(Message *m, int depth)
{
    const Descriptor *d = m->GetDescriptor();
    const Reflection *r = m->GetReflection();
    std::string fn = d->full_name();
    if (fn == "google.protobuf.Timestamp") {
        r->SetInt64(m, d->FindFieldByNumber(1), R(2000000000) - 1000000000);
        r->SetInt32(m, d->FindFieldByNumber(2), R(3) * 1000000);
        return;
    }
    if (fn == "google.protobuf.Duration") {
        int64_t s = R(100000) - 50000;
        r->SetInt64(m, d->FindFieldByNumber(1), s);
        r->SetInt32(m, d->FindFieldByNumber(2), s < 0 ? -R(1000) * 1000 : R(1000) * 1000);
        return;
    }
    if (fn == "google.protobuf.FieldMask") {
        r->AddString(m, d->FindFieldByNumber(1), "a.b_c");
        r->AddString(m, d->FindFieldByNumber(1), "x");
        return;
    }
    if (fn == "google.protobuf.Any") {
        if (depth > 3)
            return;
        r->SetString(m, d->FindFieldByNumber(1), "type.googleapis.com/pt.test.Scalars");
        const Descriptor *sd = d->file()->pool()->FindMessageTypeByName("pt.test.Scalars");
        static DynamicMessageFactory f2;
        std::unique_ptr<Message> s(f2.GetPrototype(sd)->New());
        fill(s.get(), depth + 1);
        r->SetString(m, d->FindFieldByNumber(2), s->SerializeAsString());
        return;
    }
    if (fn == "google.protobuf.Value") {
        int k = R(depth > 3 ? 4 : 6);
        if (k == 0 && no_null)
            k = 3;
        switch (k) {
        case 0:
            r->SetEnumValue(m, d->FindFieldByNumber(1), 0);
            break;
        case 1:
            r->SetDouble(m, d->FindFieldByNumber(2), (R(2000) - 1000) / 8.0);
            break;
        case 2:
            r->SetString(m, d->FindFieldByNumber(3), rstr());
            break;
        case 3:
            r->SetBool(m, d->FindFieldByNumber(4), R(2));
            break;
        case 4:
            fill(r->MutableMessage(m, d->FindFieldByNumber(5)), depth + 1);
            break;
        default:
            fill(r->MutableMessage(m, d->FindFieldByNumber(6)), depth + 1);
            break;
        }
        return;
    }
    for (int i = 0; i < d->field_count(); i++) {
        const FieldDescriptor *f = d->field(i);
        if (R(3) == 0 && !d->options().map_entry())
            continue;
        if (f->real_containing_oneof() && R(2))
            continue;
        int n = f->is_map() ? 1 : f->is_repeated() ? R(4) : 1;
        for (int k = 0; k < n; k++) {
            bool rep = f->is_repeated();
            switch (f->cpp_type()) {
#define SET(T, v)                                                                                  \
    if (rep)                                                                                       \
        r->Add##T(m, f, v);                                                                        \
    else                                                                                           \
        r->Set##T(m, f, v);                                                                        \
    break;
            case FieldDescriptor::CPPTYPE_INT32:
                SET(Int32, (int32_t)(rng() >> R(64)) * (R(2) ? 1 : -1))
            case FieldDescriptor::CPPTYPE_INT64:
                SET(Int64, (int64_t)(rng() >> R(64)))
            case FieldDescriptor::CPPTYPE_UINT32:
                SET(UInt32, (uint32_t)(rng() >> R(64)))
            case FieldDescriptor::CPPTYPE_UINT64:
                SET(UInt64, (uint64_t)(rng() >> R(64)))
            case FieldDescriptor::CPPTYPE_DOUBLE: {
                double v =
                    R(10) == 0 ? 1.0 / 0.0 : (double)(int64_t)(rng() >> R(64)) / (1 + R(1000));
                SET(Double, v)
            }
            case FieldDescriptor::CPPTYPE_FLOAT: {
                float v = (float)((double)(int64_t)(rng() >> R(64)) / (1 + R(1000)));
                SET(Float, v)
            }
            case FieldDescriptor::CPPTYPE_BOOL:
                SET(Bool, R(2))
            case FieldDescriptor::CPPTYPE_STRING:
                SET(String, rstr())
            case FieldDescriptor::CPPTYPE_ENUM: {
                const EnumDescriptor *e = f->enum_type();
                int v = R(5) == 0 && e->file()->syntax() == FileDescriptor::SYNTAX_PROTO3
                            ? 77
                            : e->value(R(e->value_count()))->number();
                if (rep)
                    r->AddEnumValue(m, f, v);
                else
                    r->SetEnumValue(m, f, v);
                break;
            }
            case FieldDescriptor::CPPTYPE_MESSAGE:
                if (depth > 4 && !d->options().map_entry())
                    break;
                if (f->is_map()) {
                    Message *e = r->AddMessage(m, f);
                    bool saved = no_null;
                    no_null = fn == "google.protobuf.Struct";
                    fill(e, depth + 1);
                    no_null = saved;
                    break;
                }
                if (rep)
                    fill(r->AddMessage(m, f), depth + 1);
                else
                    fill(r->MutableMessage(m, f), depth + 1);
                break;
            }
        }
    }
}
int main(int argc, char **argv)
{
    std::ifstream in(argv[1], std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string set = ss.str();
    FileDescriptorSet fds;
    fds.ParseFromString(set);
    DescriptorPool dp;
    for (auto &f : fds.file())
        dp.BuildFile(f);
    std::unique_ptr<util::TypeResolver> res(
        util::NewTypeResolverForDescriptorPool("type.googleapis.com", &dp));
    pt_descpool_t *pool;
    pt_xerr_t err;
    pt_descpool_new(NULL, &pool, &err);
    pt_descpool_add_set(pool, (const uint8_t *)set.data(), set.size(), "x", &err);
    pt_descpool_build(pool, &err);
    DynamicMessageFactory fac(&dp);
    const char *types[] = {"pt.test.Scalars", "pt.test.Repeated", "pt.test.Maps",
                           "pt.test.Oneofs",  "pt.test.Nested",   "pt.test.WKTs"};
    int iters = argc > 2 ? atoi(argv[2]) : 2000, bad = 0, textdiff = 0;
    bool verbose = argc > 3;
    for (int it = 0; it < iters; it++) {
        for (int opt = 0; opt < 2; opt++) {
            const char *tn = types[it % 6];
            const Descriptor *d = dp.FindMessageTypeByName(tn);
            std::unique_ptr<Message> m0(fac.GetPrototype(d)->New());
            fill(m0.get(), 0);
            std::string bin = m0->SerializeAsString(), ref;
            std::unique_ptr<Message> m(fac.GetPrototype(d)->New());
            m->ParseFromString(bin); /* maps: last key wins */
            util::JsonPrintOptions po;
            po.always_print_primitive_fields = opt;
            auto st = util::BinaryToJsonString(res.get(), std::string("type.googleapis.com/") + tn,
                                               bin, &ref, po);
            pt_xbuf_t out;
            pt_xbuf_init(&out, NULL);
            pt_json_opts_t o = {};
            o.emit_defaults = opt;
            int rc = pt_pb_to_json(pool, pt_descpool_message(pool, tn, strlen(tn)),
                                   (const uint8_t *)bin.data(), bin.size(), &o, &out, &err);
            std::string ours((const char *)out.data, out.len);
            pt_xbuf_dispose(&out);
            if ((rc == 0) != st.ok()) {
                printf("STATUS MISMATCH %s ours=%d(%s: %s) lib=%s\n", tn, rc, err.path, err.msg,
                       st.ToString().c_str());
                bad++;
                continue;
            }
            if (rc)
                continue;
            std::string back;
            auto st2 = util::JsonToBinaryString(res.get(), std::string("type.googleapis.com/") + tn,
                                                ours, &back);
            std::unique_ptr<Message> m2(fac.GetPrototype(d)->New());
            std::string back3;
            std::unique_ptr<Message> m3(fac.GetPrototype(d)->New());
            bool lib_ok = util::JsonToBinaryString(
                              res.get(), std::string("type.googleapis.com/") + tn, ref, &back3)
                              .ok() &&
                          m3->ParseFromString(back3);
            if (!st2.ok() || !m2->ParseFromString(back) ||
                !(util::MessageDifferencer::Equals(*m, *m2) ||
                  (lib_ok && util::MessageDifferencer::Equals(*m3, *m2)))) {
                if (bad < 5)
                    printf("ROUNDTRIP FAIL %s: %s\n ours %s\n lib  %s\n", tn,
                           st2.ToString().c_str(), ours.c_str(), ref.c_str());
                bad++;
                continue;
            }
            if (ours != ref && textdiff++ < 3 && verbose)
                printf("TEXT DIFF %s\n ours %s\n lib  %s\n", tn, ours.c_str(), ref.c_str());
        }
    }
    printf("%d messages x 2 option sets: %d failures, %d textual differences (float forms, field "
           "order)\n",
           iters, bad, textdiff);
    pt_descpool_unref(pool);
    return bad != 0;
}
