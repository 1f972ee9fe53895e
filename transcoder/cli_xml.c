/*
 * cli_xml.c -- the XML modes of portico-transcode (see cli.c for the rest).
 *
 *   portico-transcode --wsdl FILE --list
 *   portico-transcode --wsdl FILE --op NAME [--service S] [--port P] --to-envelope
 *                     [--bind FIELD=VALUE]... [--wsse-user U --wsse-password-file F] < in.json
 *   portico-transcode --wsdl FILE --op NAME [--service S] [--port P] --from-envelope < out.xml
 *   portico-transcode --xml-to-json < doc.xml        (generic convention, no WSDL)
 *   portico-transcode --json-to-xml < doc.json
 *
 * --from-envelope prints the JSON the gateway would send: the output object
 * (exit 0), a fault's {"error":...} (exit 1, "fault: HTTP 4xx/5xx" on stderr)
 * or, for an answer that is not usable, the 502 reason on stderr (exit 1).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/transcoder/soap.h"
#include "portico/transcoder/xmljson.h"

#define PROG "portico-transcode"
#define MAX_BIND 64

int pt__cli_xml_main(int argc, char **argv);

static int slurp(FILE *f, pt_xbuf_t *b)
{
    for (;;) {
        if (pt_xbuf_reserve(b, 65536) != 0)
            return -1;
        size_t n = fread(b->data + b->len, 1, b->cap - b->len, f);
        b->len += n;
        if (n == 0)
            return ferror(f) ? -1 : 0;
        if (b->len > (256u << 20))
            return -1;
    }
}

static void list(const pt_wsdl_t *w)
{
    for (size_t i = 0; i < pt_wsdl_port_count(w); i++) {
        const pt_soap_port_t *p = pt_wsdl_port(w, i);
        printf("service %s port %s (SOAP %s, binding %s) at %s\n", p->service, p->name,
               p->soap_version == PT_SOAP_12 ? "1.2" : "1.1", p->binding, p->address);
        for (size_t k = 0; k < p->op_cnt; k++) {
            const pt_soap_op_t *op = &p->ops[k];
            char ct[512];
            pt_soap_content_type(op, ct, sizeof(ct));
            printf("  %s (%s/literal) action \"%s\"\n", op->name, op->is_rpc ? "rpc" : "document",
                   op->soap_action);
            printf("    in  {%s}%s\n", op->input_ns, op->input_name);
            if (op->is_oneway)
                printf("    out (one-way)\n");
            else
                printf("    out {%s}%s\n", op->output_ns, op->output_name);
            printf("    content-type: %s\n", ct);
            printf("    fields:");
            for (size_t f = 0; f < op->field_cnt; f++)
                printf(" %s%s%s%s", op->fields[f].name, op->fields[f].is_repeated ? "[]" : "",
                       op->fields[f].is_required ? "!" : "",
                       op->fields[f].is_bindable ? "" : "{}");
            printf("\n");
        }
    }
}

static int write_out(const pt_xbuf_t *b)
{
    if (fwrite(b->data, 1, b->len, stdout) != b->len || fputc('\n', stdout) == EOF ||
        fflush(stdout) != 0) {
        fprintf(stderr, PROG ": stdout: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}

static int read_secret(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t r = fread(buf, 1, n - 1, f);
    fclose(f);
    buf[r] = '\0';
    while (r > 0 && (buf[r - 1] == '\n' || buf[r - 1] == '\r'))
        buf[--r] = '\0';
    return 0;
}

int pt__cli_xml_main(int argc, char **argv)
{
    enum { O_WSDL = 300, O_LIST, O_OP, O_SERVICE, O_PORT, O_TO_ENV, O_FROM_ENV, O_BIND,
           O_USER, O_PASSFILE, O_X2J, O_J2X };
    static const struct option lo[] = {
        {"wsdl", required_argument, NULL, O_WSDL},
        {"list", no_argument, NULL, O_LIST},
        {"op", required_argument, NULL, O_OP},
        {"service", required_argument, NULL, O_SERVICE},
        {"port", required_argument, NULL, O_PORT},
        {"to-envelope", no_argument, NULL, O_TO_ENV},
        {"from-envelope", no_argument, NULL, O_FROM_ENV},
        {"bind", required_argument, NULL, O_BIND},
        {"wsse-user", required_argument, NULL, O_USER},
        {"wsse-password-file", required_argument, NULL, O_PASSFILE},
        {"xml-to-json", no_argument, NULL, O_X2J},
        {"json-to-xml", no_argument, NULL, O_J2X},
        {NULL, 0, NULL, 0},
    };
    const char *wsdl = NULL, *opname = NULL, *svc = NULL, *port = NULL, *user = NULL,
               *passfile = NULL;
    pt_soap_binding_t binds[MAX_BIND];
    size_t nb = 0;
    int mode = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case O_WSDL:
            wsdl = optarg;
            break;
        case O_OP:
            opname = optarg;
            break;
        case O_SERVICE:
            svc = optarg;
            break;
        case O_PORT:
            port = optarg;
            break;
        case O_USER:
            user = optarg;
            break;
        case O_PASSFILE:
            passfile = optarg;
            break;
        case O_BIND: {
            const char *eq = strchr(optarg, '=');
            if (eq == NULL || nb == MAX_BIND) {
                fprintf(stderr, PROG ": --bind FIELD=VALUE (at most %d)\n", MAX_BIND);
                return 2;
            }
            binds[nb++] = (pt_soap_binding_t){optarg, (size_t)(eq - optarg), eq + 1,
                                              strlen(eq + 1)};
            break;
        }
        case O_LIST:
        case O_TO_ENV:
        case O_FROM_ENV:
        case O_X2J:
        case O_J2X:
            if (mode != 0 && mode != c) {
                fprintf(stderr, PROG ": choose one of --list, --to-envelope, --from-envelope, "
                                "--xml-to-json, --json-to-xml\n");
                return 2;
            }
            mode = c;
            break;
        default:
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (mode == 0) {
        fprintf(stderr, PROG ": no mode given (--list, --to-envelope, --from-envelope, "
                        "--xml-to-json, --json-to-xml)\n");
        return 2;
    }
    pt_xbuf_t in, out;
    pt_xbuf_init(&in, NULL);
    pt_xbuf_init(&out, NULL);
    int ret = 1;
    pt_wsdl_t *w = NULL;
    if (mode == O_X2J || mode == O_J2X) {
        pt_xerr_t err;
        if (slurp(stdin, &in) != 0) {
            fprintf(stderr, PROG ": stdin: read error or too large\n");
            goto done;
        }
        int rc = mode == O_X2J ? pt_xml_to_json((const char *)in.data, in.len, NULL, &out, &err)
                               : pt_json_to_xml((const char *)in.data, in.len, NULL, &out, &err);
        if (rc != 0) {
            char m[600];
            pt_xerr_format(&err, m, sizeof(m));
            fprintf(stderr, PROG ": %s\n", m);
            goto done;
        }
        ret = write_out(&out);
        goto done;
    }
    if (wsdl == NULL) {
        fprintf(stderr, PROG ": --wsdl FILE is required\n");
        return 2;
    }
    pt_wsdl_err_t we;
    if (pt_wsdl_load(wsdl, NULL, NULL, &w, &we) != 0) {
        char m[1200];
        pt_wsdl_err_format(&we, m, sizeof(m));
        fprintf(stderr, PROG ": %s\n", m);
        goto done;
    }
    if (mode == O_LIST) {
        list(w);
        ret = 0;
        goto done;
    }
    if (opname == NULL) {
        fprintf(stderr, PROG ": --op NAME is required\n");
        ret = 2;
        goto done;
    }
    char why[600];
    const pt_soap_port_t *p = pt_wsdl_find_port(w, svc, port, why, sizeof(why));
    if (p == NULL) {
        fprintf(stderr, PROG ": %s\n", why);
        goto done;
    }
    const pt_soap_op_t *op = pt_soap_port_op(p, opname, strlen(opname));
    if (op == NULL) {
        fprintf(stderr, PROG ": port %s has no operation %s\n", p->name, opname);
        goto done;
    }
    if (slurp(stdin, &in) != 0) {
        fprintf(stderr, PROG ": stdin: read error or too large\n");
        goto done;
    }
    if (mode == O_TO_ENV) {
        char pass[1024] = "";
        if (passfile != NULL && read_secret(passfile, pass, sizeof(pass)) != 0)
            goto done;
        pt_soap_req_opts_t ro = {0};
        if (user != NULL && passfile != NULL) {
            ro.wsse_user = user;
            ro.wsse_password = pass;
        }
        pt_xerrs_t errs;
        pt_xerrs_clear(&errs);
        if (pt_soap_build_request(op, (const char *)in.data, in.len, binds, nb, &ro, &out,
                                  &errs) != 0) {
            for (size_t i = 0; i < errs.cnt; i++) {
                char m[600];
                pt_xerr_format(&errs.items[i], m, sizeof(m));
                fprintf(stderr, PROG ": %s\n", m);
            }
            goto done;
        }
        ret = write_out(&out);
        goto done;
    }
    pt_soap_result_t res;
    if (pt_soap_parse_response(op, (const char *)in.data, in.len, NULL, &res, &out) != 0) {
        fprintf(stderr, PROG ": out of memory\n");
        goto done;
    }
    if (res.outcome == PT_SOAP_BAD) {
        fprintf(stderr, PROG ": HTTP %d: %s\n", res.http_status, res.msg);
        goto done;
    }
    if (write_out(&out) != 0)
        goto done;
    if (res.outcome == PT_SOAP_FAULT) {
        fprintf(stderr, PROG ": fault %s: HTTP %d\n", res.fault_code, res.http_status);
        goto done;
    }
    ret = 0;
done:
    pt_wsdl_free(w);
    pt_xbuf_dispose(&in);
    pt_xbuf_dispose(&out);
    return ret;
}
