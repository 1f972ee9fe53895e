/*
 * cli.c -- portico-transcode: the transcoder on the command line.
 *
 *   portico-transcode -d set.pb [-d more.pb] --type pkg.Msg --to-json   < msg.bin  > msg.json
 *   portico-transcode -d set.pb [-d more.pb] --type pkg.Msg --to-binary < msg.json > msg.bin
 *   portico-transcode -d set.pb --list [--default-bindings]
 *   portico-transcode -d set.pb --match METHOD TARGET [--body FILE] [--content-type CT]
 *   portico-transcode --wsdl FILE --list | --op NAME --to-envelope|--from-envelope (cli_xml.c)
 *
 * Exit status: 0 success; 1 a conversion, descriptor or routing error (the
 * message, with the path of the offending value, goes to stderr); 2 a usage
 * error. This is the only file of the transcoder that does I/O.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/transcoder/descpool.h"
#include "portico/transcoder/httprule.h"
#include "portico/transcoder/json.h"

#define PROG "portico-transcode"
#define MAX_SETS 64
#define MAX_INPUT (256u << 20) /* refuse inputs over 256 MiB */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " PROG " -d SET.pb [-d SET.pb]... MODE [OPTIONS]\n"
            "modes:\n"
            "  --type NAME --to-json      protobuf binary on stdin -> JSON on stdout\n"
            "  --type NAME --to-binary    JSON on stdin -> protobuf binary on stdout\n"
            "  --list                     services, methods, streaming kinds, HTTP bindings\n"
            "  --match METHOD TARGET      route an HTTP request (path?query) and show the\n"
            "                             gRPC request it becomes; body from --body FILE ('-' = "
            "stdin)\n"
            "options:\n"
            "  -d, --descriptor-set FILE  a FileDescriptorSet (protoc --include_imports\n"
            "                             --descriptor_set_out); repeatable\n"
            "  --emit-defaults            output fields holding default values\n"
            "  --proto-names              output proto field names instead of lowerCamelCase\n"
            "  --enums-as-ints            output enums as numbers\n"
            "  --ignore-unknown           skip unknown JSON fields / query parameters\n"
            "  --enum-case-insensitive    accept enum names in any case\n"
            "  --max-depth N              message nesting limit (default %u)\n"
            "  --default-bindings         POST /pkg.Service/Method for unannotated methods\n"
            "  --service NAME             only this service in --list/--match (repeatable)\n"
            "  --content-type CT          Content-Type of the --match body\n"
            "  -h, --help, --version\n"
            "XML modes (no -d):\n"
            "  --wsdl FILE --list         SOAP services, ports, operations, fields\n"
            "  --wsdl FILE --op NAME [--service S] [--port P] --to-envelope [--bind F=V]...\n"
            "       [--wsse-user U --wsse-password-file F]   JSON on stdin -> SOAP envelope\n"
            "  --wsdl FILE --op NAME [--service S] [--port P] --from-envelope\n"
            "                             SOAP response on stdin -> JSON (or fault JSON)\n"
            "  --xml-to-json, --json-to-xml   generic XML <-> JSON (xml_json convention)\n"
            "exit status: 0 ok, 1 conversion/descriptor/routing error, 2 usage error\n",
            PT_JSON_DEFAULT_MAX_DEPTH);
}

static void print_err(const pt_xerr_t *e)
{
    if (e->path[0] != '\0')
        fprintf(stderr, PROG ": %s: %s\n", e->path, e->msg);
    else
        fprintf(stderr, PROG ": %s\n", e->msg);
}

static void print_errs(const pt_xerrs_t *l)
{
    for (size_t i = 0; i < l->cnt; i++)
        print_err(&l->items[i]);
    if (l->dropped)
        fprintf(stderr, PROG ": ... and %zu more\n", l->dropped);
}

/* Reads a whole stream; returns 0 or -1 (message printed). */
static int read_all(FILE *f, const char *what, pt_xbuf_t *b)
{
    for (;;) {
        if (pt_xbuf_reserve(b, 65536) != 0) {
            fprintf(stderr, PROG ": %s: out of memory\n", what);
            return -1;
        }
        size_t n = fread(b->data + b->len, 1, b->cap - b->len, f);
        b->len += n;
        if (b->len > MAX_INPUT) {
            fprintf(stderr, PROG ": %s: input larger than %u bytes\n", what, MAX_INPUT);
            return -1;
        }
        if (n == 0) {
            if (ferror(f)) {
                fprintf(stderr, PROG ": %s: %s\n", what, strerror(errno));
                return -1;
            }
            return 0;
        }
    }
}

static int read_file(const char *path, pt_xbuf_t *b)
{
    if (strcmp(path, "-") == 0)
        return read_all(stdin, "stdin", b);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = read_all(f, path, b);
    fclose(f);
    return rc;
}

static const char *stream_kind(const pt_methoddesc_t *m)
{
    if (m->client_streaming && m->server_streaming)
        return "bidi streaming";
    if (m->client_streaming)
        return "client streaming";
    if (m->server_streaming)
        return "server streaming";
    return "unary";
}

static void print_binding(const pt_httpbinding_t *b)
{
    printf("    %s %s", b->http_method, b->path);
    if (b->body_kind != PT_HTTPBODY_NONE)
        printf("  body=%s%s", b->body, b->request_is_httpbody ? " (raw HttpBody)" : "");
    if (b->response_body[0] != '\0')
        printf("  response_body=%s", b->response_body);
    if (b->response_is_httpbody)
        printf("  response=raw HttpBody");
    if (b->level > 0)
        printf("  (additional binding)");
    if (b->is_default)
        printf("  (default binding)");
    printf("\n");
}

static bool svc_selected(const char *const *svcs, size_t n, const char *name)
{
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++)
        if (strcmp(svcs[i], name) == 0)
            return true;
    return false;
}

static int do_list(const pt_descpool_t *pool, const pt_httprule_table_t *t, const char *const *svcs,
                   size_t nsvc)
{
    size_t shown = 0;
    if (t == NULL)
        printf("(HTTP bindings not shown: the route table has errors, listed on stderr)\n");
    for (size_t si = 0; si < pt_descpool_service_cnt(pool); si++) {
        const pt_svcdesc_t *s = pt_descpool_service_at(pool, si);
        if (!svc_selected(svcs, nsvc, s->full_name))
            continue;
        shown++;
        printf("service %s  (%s)\n", s->full_name, s->file ? s->file->name : "?");
        for (size_t mi = 0; mi < s->method_cnt; mi++) {
            const pt_methoddesc_t *m = &s->methods[mi];
            printf("  rpc %s(%s%s) returns (%s%s)  [%s]\n", m->name,
                   m->client_streaming ? "stream " : "", m->input->full_name,
                   m->server_streaming ? "stream " : "", m->output->full_name, stream_kind(m));
            size_t nb = 0;
            for (size_t i = 0; t != NULL && i < pt_httprule_table_binding_cnt(t); i++) {
                const pt_httpbinding_t *b = pt_httprule_table_binding(t, i);
                if (b->method == m) {
                    print_binding(b);
                    nb++;
                }
            }
            if (nb == 0 && t != NULL)
                printf("    (no HTTP binding)\n");
        }
    }
    if (shown == 0)
        printf("(no services)\n");
    return 0;
}

static int do_match(const pt_httprule_table_t *t, const pt_descpool_t *pool, const char *method,
                    const char *target, const char *body_file, const char *ctype,
                    const pt_json_opts_t *jo)
{
    size_t tlen = strlen(target);
    size_t cap = PT_PATHMATCH_SCRATCH_LEN(tlen);
    char *scratch = malloc(cap);
    if (scratch == NULL) {
        fprintf(stderr, PROG ": out of memory\n");
        return 1;
    }
    int ret = 1;
    pt_xbuf_t body, pb, js;
    pt_xbuf_init(&body, NULL);
    pt_xbuf_init(&pb, NULL);
    pt_xbuf_init(&js, NULL);
    pt_httprule_match_t m;
    pt_pathmatch_status_t st =
        pt_httprule_match(t, method, strlen(method), target, tlen, NULL, scratch, cap, &m);
    switch (st) {
    case PT_PATHMATCH_OK:
        break;
    case PT_PATHMATCH_NOT_FOUND:
        fprintf(stderr, PROG ": %s %s: 404 no binding matches the path\n", method, target);
        goto out;
    case PT_PATHMATCH_METHOD: {
        fprintf(stderr, PROG ": %s %s: 405 method not allowed; allowed:", method, target);
        static const char *names[] = {"GET",   "PUT",  "POST",    "DELETE",
                                      "PATCH", "HEAD", "OPTIONS", "(custom)"};
        for (unsigned i = 0; i < 8; i++)
            if (m.path.allowed & (1u << i))
                fprintf(stderr, " %s", names[i]);
        fprintf(stderr, "\n");
        goto out;
    }
    default:
        fprintf(stderr, PROG ": %s %s: 400 %s\n", method, target,
                m.path.reason ? m.path.reason : "bad path");
        goto out;
    }
    const pt_httpbinding_t *b = m.binding;
    printf("method: %s  [%s]\n", b->method->full_name, stream_kind(b->method));
    printf("binding:\n");
    print_binding(b);
    for (size_t i = 0; i < m.path.var_cnt; i++)
        printf("var %s = \"%.*s\"\n", m.path.vars[i].field_path, (int)m.path.vars[i].value_len,
               m.path.vars[i].value);
    if (body_file != NULL && read_file(body_file, &body) != 0)
        goto out;
    const char *q = memchr(target, '?', tlen);
    pt_xerrs_t errs;
    pt_xerrs_clear(&errs);
    int rc = pt_httprule_transcode_request(t, &m, body.data, body.len, ctype, q ? q + 1 : NULL,
                                           q ? tlen - (size_t)(q + 1 - target) : 0, jo, &pb, &errs);
    if (rc != 0) {
        fprintf(stderr, PROG ": %s %s: 400 the request has %zu problem(s):\n", method, target,
                errs.cnt + errs.dropped);
        print_errs(&errs);
        goto out;
    }
    pt_xerr_t err;
    rc = pt_pb_to_json(pool, b->method->input, pb.data, pb.len, jo, &js, &err);
    if (rc != 0) {
        print_err(&err);
        goto out;
    }
    printf("request %s: %.*s\n", b->method->input->full_name, (int)js.len, (const char *)js.data);
    printf("request bytes: %zu\n", pb.len);
    ret = 0;
out:
    pt_xbuf_dispose(&body);
    pt_xbuf_dispose(&pb);
    pt_xbuf_dispose(&js);
    free(scratch);
    return ret;
}

enum {
    OPT_TYPE = 256,
    OPT_TO_JSON,
    OPT_TO_BINARY,
    OPT_LIST,
    OPT_MATCH,
    OPT_EMIT_DEFAULTS,
    OPT_PROTO_NAMES,
    OPT_ENUMS_AS_INTS,
    OPT_IGNORE_UNKNOWN,
    OPT_ENUM_CI,
    OPT_MAX_DEPTH,
    OPT_DEFAULT_BINDINGS,
    OPT_SERVICE,
    OPT_BODY,
    OPT_CONTENT_TYPE,
    OPT_VERSION
};

int pt__cli_xml_main(int argc, char **argv); /* cli_xml.c */

int main(int argc, char **argv)
{
    /* The XML modes (--wsdl, --xml-to-json, --json-to-xml) live in cli_xml.c. */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--wsdl") == 0 || strncmp(argv[i], "--wsdl=", 7) == 0 ||
            strcmp(argv[i], "--xml-to-json") == 0 || strcmp(argv[i], "--json-to-xml") == 0)
            return pt__cli_xml_main(argc, argv);
    static const struct option longopts[] = {
        {"descriptor-set", required_argument, NULL, 'd'},
        {"type", required_argument, NULL, OPT_TYPE},
        {"to-json", no_argument, NULL, OPT_TO_JSON},
        {"to-binary", no_argument, NULL, OPT_TO_BINARY},
        {"list", no_argument, NULL, OPT_LIST},
        {"match", no_argument, NULL, OPT_MATCH},
        {"emit-defaults", no_argument, NULL, OPT_EMIT_DEFAULTS},
        {"proto-names", no_argument, NULL, OPT_PROTO_NAMES},
        {"enums-as-ints", no_argument, NULL, OPT_ENUMS_AS_INTS},
        {"ignore-unknown", no_argument, NULL, OPT_IGNORE_UNKNOWN},
        {"enum-case-insensitive", no_argument, NULL, OPT_ENUM_CI},
        {"max-depth", required_argument, NULL, OPT_MAX_DEPTH},
        {"default-bindings", no_argument, NULL, OPT_DEFAULT_BINDINGS},
        {"service", required_argument, NULL, OPT_SERVICE},
        {"body", required_argument, NULL, OPT_BODY},
        {"content-type", required_argument, NULL, OPT_CONTENT_TYPE},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    const char *sets[MAX_SETS];
    size_t nsets = 0;
    const char *svcs[MAX_SETS];
    size_t nsvc = 0;
    const char *type = NULL, *body_file = NULL, *ctype = NULL;
    int mode = 0;
    pt_json_opts_t jo = {0};
    bool default_bindings = false;
    int c;
    while ((c = getopt_long(argc, argv, "d:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            if (nsets == MAX_SETS) {
                fprintf(stderr, PROG ": too many descriptor sets\n");
                return 2;
            }
            sets[nsets++] = optarg;
            break;
        case OPT_TYPE:
            type = optarg;
            break;
        case OPT_TO_JSON:
        case OPT_TO_BINARY:
        case OPT_LIST:
        case OPT_MATCH:
            if (mode != 0 && mode != c) {
                fprintf(stderr, PROG ": choose one of --to-json, --to-binary, --list, --match\n");
                return 2;
            }
            mode = c;
            break;
        case OPT_EMIT_DEFAULTS:
            jo.emit_defaults = true;
            break;
        case OPT_PROTO_NAMES:
            jo.proto_names = true;
            break;
        case OPT_ENUMS_AS_INTS:
            jo.enums_as_ints = true;
            break;
        case OPT_IGNORE_UNKNOWN:
            jo.ignore_unknown = true;
            break;
        case OPT_ENUM_CI:
            jo.enum_case_insensitive = true;
            break;
        case OPT_MAX_DEPTH: {
            char *end;
            errno = 0;
            unsigned long v = strtoul(optarg, &end, 10);
            if (errno != 0 || *end != '\0' || end == optarg || v == 0 ||
                v > PT_JSON_MAX_DEPTH_CAP) {
                fprintf(stderr, PROG ": --max-depth: expected 1..%u, got '%s'\n",
                        PT_JSON_MAX_DEPTH_CAP, optarg);
                return 2;
            }
            jo.max_depth = (unsigned)v;
            break;
        }
        case OPT_DEFAULT_BINDINGS:
            default_bindings = true;
            break;
        case OPT_SERVICE:
            if (nsvc == MAX_SETS) {
                fprintf(stderr, PROG ": too many --service options\n");
                return 2;
            }
            svcs[nsvc++] = optarg;
            break;
        case OPT_BODY:
            body_file = optarg;
            break;
        case OPT_CONTENT_TYPE:
            ctype = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case OPT_VERSION:
            printf(PROG " %s\n", PORTICO_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    const char *hmethod = NULL, *target = NULL;
    if (mode == OPT_MATCH) {
        if (argc - optind != 2) {
            fprintf(stderr, PROG ": --match needs METHOD and TARGET\n");
            return 2;
        }
        hmethod = argv[optind];
        target = argv[optind + 1];
    } else if (optind != argc) {
        fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (mode == 0 || nsets == 0) {
        fprintf(stderr, PROG ": %s\n",
                nsets == 0 ? "at least one -d SET.pb is required" : "no mode given");
        usage(stderr);
        return 2;
    }
    if ((mode == OPT_TO_JSON || mode == OPT_TO_BINARY) && type == NULL) {
        fprintf(stderr, PROG ": --to-json and --to-binary need --type pkg.Message\n");
        return 2;
    }

    int ret = 1;
    pt_descpool_t *pool = NULL;
    pt_httprule_table_t *table = NULL;
    pt_xbuf_t in, out;
    pt_xbuf_init(&in, NULL);
    pt_xbuf_init(&out, NULL);
    pt_xerr_t err;
    if (pt_descpool_new(NULL, &pool, &err) != 0) {
        print_err(&err);
        goto done;
    }
    for (size_t i = 0; i < nsets; i++) {
        pt_xbuf_reset(&in);
        if (read_file(sets[i], &in) != 0)
            goto done;
        if (pt_descpool_add_set(pool, in.data, in.len, sets[i], &err) != 0) {
            print_err(&err);
            goto done;
        }
    }
    if (pt_descpool_build(pool, &err) != 0) {
        print_err(&err);
        goto done;
    }
    pt_xbuf_reset(&in);

    if (mode == OPT_LIST || mode == OPT_MATCH) {
        pt_httprule_opts_t ho = {.services = nsvc ? svcs : NULL,
                                 .service_cnt = nsvc,
                                 .add_default_bindings = default_bindings};
        pt_xerrs_t errs;
        pt_xerrs_clear(&errs);
        int rc = pt_httprule_table_new(pool, &ho, &table, &errs);
        if (rc != 0) {
            print_errs(&errs);
            if (mode == OPT_LIST) /* still show what is there, then fail */
                do_list(pool, NULL, svcs, nsvc);
            goto done;
        }
        ret = mode == OPT_LIST ? do_list(pool, table, svcs, nsvc)
                               : do_match(table, pool, hmethod, target, body_file, ctype, &jo);
        goto done;
    }

    const pt_msgdesc_t *md = pt_descpool_message(pool, type, strlen(type));
    if (md == NULL) {
        fprintf(stderr, PROG ": --type %s: no such message in the descriptor sets\n", type);
        goto done;
    }
    if (read_all(stdin, "stdin", &in) != 0)
        goto done;
    int rc;
    if (mode == OPT_TO_JSON)
        rc = pt_pb_to_json(pool, md, in.data, in.len, &jo, &out, &err);
    else
        rc = pt_json_to_pb(pool, md, (const char *)in.data, in.len, &jo, &out, &err);
    if (rc != 0) {
        print_err(&err);
        goto done;
    }
    if (mode == OPT_TO_JSON && pt_xbuf_putc(&out, '\n') != 0) {
        fprintf(stderr, PROG ": out of memory\n");
        goto done;
    }
    if (fwrite(out.data, 1, out.len, stdout) != out.len || fflush(stdout) != 0) {
        fprintf(stderr, PROG ": stdout: %s\n", strerror(errno));
        goto done;
    }
    ret = 0;
done:
    pt_httprule_table_free(table);
    pt_descpool_unref(pool);
    pt_xbuf_dispose(&in);
    pt_xbuf_dispose(&out);
    return ret;
}
