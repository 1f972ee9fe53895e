/*
 * main.c -- the portico command: CLI, signals, reload and drain. Nothing else.
 */
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <malloc.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <unistd.h>
#include "core/config.h"
#include "core/config_reflect.h"
#include "observe/observe.h"
#include "upstream/health.h"
#include "server.h"

static void usage(FILE *out)
{
    fputs("usage: portico -c FILE [-w N]      run the gateway\n"
          "       portico --validate -c FILE  check a config; exit 0, or 1 printing\n"
          "                                   FILE:LINE:COL: message for each problem\n"
          "       portico --version | --help\n"
          "\n"
          "  -c, --config FILE   configuration (YAML or JSON)\n"
          "  -w, --workers N     worker threads (default: `workers:` from the config, else cores)\n"
          "  -t, --validate      validate the configuration and exit\n"
          "\n"
          "signals: SIGTERM/SIGINT drain gracefully and exit 0; SIGHUP reloads the config\n",
          out);
}

typedef struct app {
    const char *config_path;
    pt_server_t server;
    struct event_base *base;
    bool stopping;
    int exit_code;
} app_t;

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    app_t *app = arg;
    if (app->stopping)
        return;
    app->stopping = true;
    fprintf(stderr, "portico: %s received, draining\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    app->server.draining = true;
    event_base_loopexit(app->base, NULL);
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    app_t *app = arg;
    if (pt_server_all_stopped(&app->server))
        event_base_loopexit(app->base, NULL);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    app_t *app = arg;
    if (app->stopping)
        return;
    /* Log rotation (mv access.log access.log.1; kill -HUP) must work even when
     * the config file is being edited and fails to load. */
    pt_observe_log_reopen();
    pt_config_t *c = pt_config_load(app->config_path, stderr);
    if (c == NULL) {
        fprintf(stderr, "portico: reload of %s rejected; the previous config keeps serving\n",
                app->config_path);
        pt_observe_reload(false);
        return;
    }
    pt_config_t *prev = pt_server_config(&app->server); /* issue 13: what bindings lose */
    if (pt_server_reload(&app->server, c) != 0) {
        fprintf(stderr, "portico: reload rejected (listeners); the previous config keeps serving\n");
        pt_observe_reload(false);
        pt_config_unref(prev);
        pt_config_unref(c);
        return;
    }
    pt_config_descriptor_diff(prev, c, stderr);
    pt_config_unref(prev);
    pt_admin_reconfigure(&app->server, c);
    pt_health_reconfigure(c);
    fprintf(stderr, "portico: configuration reloaded (generation %llu)\n",
            (unsigned long long)c->generation);
    pt_observe_reload(true);
    pt_config_unref(c);
}

/*
 * glibc's defaults cost CPU per request and keep memory after big ones:
 * - each worker's heap is trimmed whenever its free top passes 128 KiB, and
 *   a request whose arena reached the second block (a transcoded call does)
 *   crossed that line on every free: an madvise, then page faults to get the
 *   pages back (measured: 0.3 faults per REST->gRPC call, 1.5x the kernel
 *   time of a passthrough call). Trim only past 1 MiB, keeping 256 KiB;
 * - setting either turns glibc's dynamic mmap threshold off (it rises with
 *   each big block freed, up to 32 MiB, after which blocks that size come
 *   from the heap and may stay there); it is pinned at its 128 KiB default,
 *   so a big message buffer is mmapped and unmapped when freed.
 */
static void tune_malloc(void)
{
    mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
    mallopt(M_TOP_PAD, 256 * 1024);
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"workers", required_argument, NULL, 'w'},
        {"validate", no_argument, NULL, 't'},     {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    app_t app = {0};
    bool validate = false;
    long workers = -1;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:w:thV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            app.config_path = optarg;
            break;
        case 'w': {
            char *end = NULL;
            workers = strtol(optarg, &end, 10);
            if (end == optarg || *end != '\0' || workers < 1 || workers > 256) {
                fprintf(stderr, "portico: -w wants a number from 1 to 256\n");
                return 2;
            }
            break;
        }
        case 't':
            validate = true;
            break;
        case 'V':
            printf("portico %s\n", PORTICO_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (app.config_path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }

    pt_config_t *config = pt_config_load(app.config_path, stderr);
    if (config == NULL)
        return 1;
    if (validate) {
        printf("%s: ok\n", app.config_path);
        pt_config_unref(config);
        return 0;
    }

    signal(SIGPIPE, SIG_IGN);
    tune_malloc();
    evthread_use_pthreads();
    curl_global_init(CURL_GLOBAL_DEFAULT);

    unsigned n = workers > 0 ? (unsigned)workers : config->workers;
    if (n == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (unsigned)cores : 1;
    }
    app.base = event_base_new();
    /* Signal handlers go in before any socket is bound: a SIGHUP that arrives
     * as soon as the port answers must reload, not kill the process. */
    struct event *ev_term = evsignal_new(app.base, SIGTERM, on_term, &app);
    struct event *ev_int = evsignal_new(app.base, SIGINT, on_term, &app);
    struct event *ev_hup = evsignal_new(app.base, SIGHUP, on_hup, &app);
    event_add(ev_term, NULL);
    event_add(ev_int, NULL);
    event_add(ev_hup, NULL);
    if (pt_server_start(&app.server, config, n) != 0) {
        pt_config_unref(config);
        event_base_free(app.base);
        return 1;
    }
    if (pt_admin_start(&app.server, app.base, config) != 0) {
        app.server.draining = true;
        pt_server_drain_and_stop(&app.server, 0);
        pt_server_free(&app.server);
        pt_config_unref(config);
        event_base_free(app.base);
        return 1;
    }
    if (pt_health_start(app.base) != 0)
        fprintf(stderr, "portico: health checks: cannot set up the resolver; names will not resolve\n");
    pt_health_reconfigure(config);
    /* The workers and the server hold their own references from here on; keeping
     * ours would pin the first snapshot (and its filters' state) until exit. */
    unsigned listener_cnt = (unsigned)config->listener_cnt, route_cnt = (unsigned)config->route_cnt;
    pt_config_unref(config);
    config = NULL;
    app.server.ready = true;
    fprintf(stderr, "portico %s: %u worker%s, %u listener%s, %u route%s\n", PORTICO_VERSION, n,
            n == 1 ? "" : "s", listener_cnt, listener_cnt == 1 ? "" : "s", route_cnt,
            route_cnt == 1 ? "" : "s");

    event_base_dispatch(app.base);

    pt_config_t *cur = pt_server_config(&app.server);
    uint64_t drain_ms = cur != NULL ? cur->timeouts.drain_ms : 30000;
    pt_config_unref(cur);
    /* Drain with the main loop still running, so the admin listener keeps
     * answering (/ready says "draining" to load balancers) until the workers
     * are done. */
    pt_server_drain_start(&app.server, drain_ms);
    struct event *ev_wait = event_new(app.base, -1, EV_PERSIST, on_drain_tick, &app);
    struct timeval tick = {0, 20000};
    event_add(ev_wait, &tick);
    event_base_dispatch(app.base);
    event_free(ev_wait);
    pt_server_drain_and_stop(&app.server, drain_ms);
    pt_health_stop();
    pt_admin_stop(&app.server);
    pt_server_free(&app.server);
    event_free(ev_term);
    event_free(ev_int);
    event_free(ev_hup);
    event_base_free(app.base);
    curl_global_cleanup();
    fprintf(stderr, "portico: stopped\n");
    return app.exit_code;
}
