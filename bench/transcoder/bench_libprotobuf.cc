// bench_libprotobuf.cc -- the reference side of the transcoder benchmark:
// libprotobuf's own JSON utilities (the engine inside Envoy's gRPC-JSON
// transcoder), JsonToBinaryString / BinaryToJsonString with a TypeResolver
// over a DescriptorPool built from the SAME FileDescriptorSet as ours.
//
//   bench_transcoder_libprotobuf SET.pb DIR [SECS]
//
// Prints lines in the format of bench_transcoder.c, with "libprotobuf".
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/type_resolver.h>
#include <google/protobuf/util/type_resolver_util.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

namespace pb = google::protobuf;

static bool slurp(const std::string &path, std::string *out)
{
    std::ifstream f(path, std::ios::binary);
    if (!f)
        return false;
    std::ostringstream ss;
    ss << f.rdbuf();
    *out = ss.str();
    return true;
}

static double now()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s SET.pb DIR [SECS]\n", argv[0]);
        return 2;
    }
    double min_secs = argc > 3 ? std::atof(argv[3]) : 0.3;
    std::string set;
    if (!slurp(argv[1], &set)) {
        std::perror(argv[1]);
        return 1;
    }
    pb::FileDescriptorSet fds;
    if (!fds.ParseFromString(set)) {
        std::fprintf(stderr, "%s: not a FileDescriptorSet\n", argv[1]);
        return 1;
    }
    pb::DescriptorPool pool;
    for (const auto &f : fds.file()) {
        if (pool.BuildFile(f) == nullptr) {
            std::fprintf(stderr, "cannot build %s\n", f.name().c_str());
            return 1;
        }
    }
    std::unique_ptr<pb::util::TypeResolver> resolver(
        pb::util::NewTypeResolverForDescriptorPool("type.googleapis.com", &pool));
    static const char *const work[][2] = {{"small", "pt.bench.Small"},
                                          {"nested", "pt.bench.Node"},
                                          {"repeated", "pt.bench.Series"},
                                          {"map", "pt.bench.Dict"},
                                          {"wkt", "pt.bench.Event"}};
    for (const auto &w : work) {
        std::string json, bin, out;
        if (!slurp(std::string(argv[2]) + "/" + w[0] + ".json", &json)) {
            std::fprintf(stderr, "%s: missing input\n", w[0]);
            return 1;
        }
        const std::string url = std::string("type.googleapis.com/") + w[1];
        auto st = pb::util::JsonToBinaryString(resolver.get(), url, json, &bin);
        if (!st.ok()) {
            std::fprintf(stderr, "%s: %s\n", w[0], st.ToString().c_str());
            return 1;
        }
        for (int dir = 0; dir < 2; dir++) {
            long iters = 0, batch = 16;
            double t0 = now(), el = 0;
            while (el < min_secs) {
                for (long i = 0; i < batch; i++) {
                    out.clear();
                    if (dir == 0)
                        st = pb::util::JsonToBinaryString(resolver.get(), url, json, &out);
                    else
                        st = pb::util::BinaryToJsonString(resolver.get(), url, bin, &out);
                    if (!st.ok()) {
                        std::fprintf(stderr, "%s: %s\n", w[0], st.ToString().c_str());
                        return 1;
                    }
                }
                iters += batch;
                batch *= 2;
                el = now() - t0;
            }
            double mps = (double)iters / el;
            std::printf("RESULT libprotobuf %s %s %.0f %.2f %zu %zu\n", w[0],
                        dir == 0 ? "json2pb" : "pb2json", mps, mps * (double)json.size() / 1e6,
                        json.size(), bin.size());
        }
    }
    return 0;
}
