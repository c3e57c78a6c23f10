/* SPDX-License-Identifier: Apache-2.0 */
// Benchmark peers for dems-vector-bench: hnswlib and FAISS (HNSW and IVF)
// behind the same command-line interface, so the run script can drive all of
// them identically on the same files. Built by tests/bench/vector/run with
// g++ -O3 -march=native (the best case for both libraries); not part of the
// meson build because they are benchmark-only dependencies.
//
//   peers build  --lib hnswlib|faiss-hnsw|faiss-ivf --base B.fvecs --out IDX
//                --threads T [--M m] [--ef-construction n] [--nlist L]
//   peers search --lib ... --index IDX --queries Q.fvecs --k K --ef EF
//                --threads T --out RES.ivecs
//
// For faiss-ivf, --ef is nprobe. Prints build_seconds=, search_seconds= and
// memory_bytes= (resident-set growth over loading the index) to stderr.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <time.h>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/index_io.h>
#include <hnswlib/hnswlib.h>
#include <omp.h>
#include <unistd.h>

namespace {

struct Opts {
    std::string lib, base, out, index, queries;
    int threads = 1, M = 16, efc = 200, k = 10, ef = 64, nlist = 0;
};

std::vector<float> read_fvecs(const std::string &path, size_t &rows, int &dim)
{
    FILE *f = fopen(path.c_str(), "rb");
    if (!f)
        throw std::runtime_error("cannot open " + path);
    int d = 0;
    if (fread(&d, 4, 1, f) != 1 || d <= 0)
        throw std::runtime_error("bad fvecs " + path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    rows = (size_t)size / (4 + (size_t)d * 4);
    std::vector<float> v(rows * (size_t)d);
    for (size_t i = 0; i < rows; i++) {
        int di;
        if (fread(&di, 4, 1, f) != 1 || di != d ||
            fread(&v[i * (size_t)d], 4, (size_t)d, f) != (size_t)d)
            throw std::runtime_error("bad fvecs " + path);
    }
    fclose(f);
    dim = d;
    return v;
}

void write_ivecs(const std::string &path, const std::vector<int> &ids, size_t rows, int k)
{
    FILE *f = fopen(path.c_str(), "wb");
    if (!f)
        throw std::runtime_error("cannot write " + path);
    for (size_t i = 0; i < rows; i++) {
        fwrite(&k, 4, 1, f);
        fwrite(&ids[i * (size_t)k], 4, (size_t)k, f);
    }
    if (fclose(f) != 0)
        throw std::runtime_error("cannot write " + path);
}

long rss_bytes()
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * sysconf(_SC_PAGESIZE);
}

double now()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

double cpu_now()
{
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

template <class F> void parallel(size_t n, int threads, F fn)
{
    std::atomic<size_t> next{0};
    auto work = [&]() {
        for (size_t i; (i = next.fetch_add(1)) < n;)
            fn(i);
    };
    if (threads <= 1) {
        work();
        return;
    }
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; t++)
        ts.emplace_back(work);
    for (auto &t : ts)
        t.join();
}

int build(const Opts &o)
{
    size_t n;
    int dim;
    std::vector<float> base = read_fvecs(o.base, n, dim);
    omp_set_num_threads(o.threads);
    double t0 = now(), c0 = cpu_now(), t1, c1;
    if (o.lib == "hnswlib") {
        hnswlib::L2Space space(dim);
        hnswlib::HierarchicalNSW<float> h(&space, n, o.M, o.efc, 100);
        // Insert the first point alone, as hnswlib's own examples do.
        h.addPoint(&base[0], 0);
        parallel(n - 1, o.threads, [&](size_t i) { h.addPoint(&base[(i + 1) * dim], i + 1); });
        t1 = now();
        c1 = cpu_now();
        h.saveIndex(o.out);
    } else if (o.lib == "faiss-hnsw") {
        faiss::IndexHNSWFlat ix(dim, o.M);
        ix.hnsw.efConstruction = o.efc;
        ix.add((faiss::Index::idx_t)n, base.data());
        t1 = now();
        c1 = cpu_now();
        faiss::write_index(&ix, o.out.c_str());
    } else if (o.lib == "faiss-ivf") {
        int nlist = o.nlist ? o.nlist : (int)(4 * std::sqrt((double)n));
        faiss::IndexFlatL2 quant(dim);
        faiss::IndexIVFFlat ix(&quant, dim, nlist);
        size_t ntrain = std::min(n, (size_t)nlist * 64);
        ix.train((faiss::Index::idx_t)ntrain, base.data());
        ix.add((faiss::Index::idx_t)n, base.data());
        t1 = now();
        c1 = cpu_now();
        faiss::write_index(&ix, o.out.c_str());
    } else {
        fprintf(stderr, "peers: unknown --lib %s\n", o.lib.c_str());
        return 1;
    }
    fprintf(stderr, "build_seconds=%.3f\n", t1 - t0);
    fprintf(stderr, "build_cpu_seconds=%.3f\n", c1 - c0);
    return 0;
}

int search(const Opts &o)
{
    size_t nq;
    int dim;
    std::vector<float> q = read_fvecs(o.queries, nq, dim);
    std::vector<int> ids(nq * (size_t)o.k, -1);
    double t0, t1, c0, c1;
    long rss0 = rss_bytes(), rss1;
    size_t count;
    if (o.lib == "hnswlib") {
        hnswlib::L2Space space(dim);
        hnswlib::HierarchicalNSW<float> h(&space, o.index);
        rss1 = rss_bytes();
        count = h.cur_element_count;
        h.setEf((size_t)o.ef);
        t0 = now();
        c0 = cpu_now();
        parallel(nq, o.threads, [&](size_t i) {
            auto res = h.searchKnn(&q[i * (size_t)dim], (size_t)o.k);
            for (size_t r = res.size(); r > 0; r--) {
                ids[i * (size_t)o.k + r - 1] = (int)res.top().second;
                res.pop();
            }
        });
        t1 = now();
        c1 = cpu_now();
    } else {
        std::unique_ptr<faiss::Index> ix(faiss::read_index(o.index.c_str()));
        rss1 = rss_bytes();
        count = (size_t)ix->ntotal;
        if (auto *hn = dynamic_cast<faiss::IndexHNSW *>(ix.get()))
            hn->hnsw.efSearch = o.ef;
        else if (auto *iv = dynamic_cast<faiss::IndexIVF *>(ix.get()))
            iv->nprobe = (size_t)o.ef;
        omp_set_num_threads(o.threads);
        std::vector<float> dist(nq * (size_t)o.k);
        std::vector<faiss::Index::idx_t> lab(nq * (size_t)o.k);
        t0 = now();
        c0 = cpu_now();
        ix->search((faiss::Index::idx_t)nq, q.data(), o.k, dist.data(), lab.data());
        t1 = now();
        c1 = cpu_now();
        for (size_t i = 0; i < lab.size(); i++)
            ids[i] = (int)lab[i];
    }
    fprintf(stderr, "search_seconds=%.4f\n", t1 - t0);
    fprintf(stderr, "search_cpu_seconds=%.4f\n", c1 - c0);
    fprintf(stderr, "memory_bytes=%ld bytes_per_vector=%.1f\n", rss1 - rss0,
            (double)(rss1 - rss0) / (double)count);
    write_ivecs(o.out, ids, nq, o.k);
    return 0;
}

} // namespace

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    Opts o;
    for (int i = 2; i + 1 < argc; i += 2) {
        std::string a = argv[i], v = argv[i + 1];
        if (a == "--lib")
            o.lib = v;
        else if (a == "--base")
            o.base = v;
        else if (a == "--out")
            o.out = v;
        else if (a == "--index")
            o.index = v;
        else if (a == "--queries")
            o.queries = v;
        else if (a == "--threads")
            o.threads = std::stoi(v.c_str());
        else if (a == "--M")
            o.M = std::stoi(v.c_str());
        else if (a == "--ef-construction")
            o.efc = std::stoi(v.c_str());
        else if (a == "--k")
            o.k = std::stoi(v.c_str());
        else if (a == "--ef")
            o.ef = std::stoi(v.c_str());
        else if (a == "--nlist")
            o.nlist = std::stoi(v.c_str());
        else {
            fprintf(stderr, "peers: unknown option %s\n", a.c_str());
            return 2;
        }
    }
    try {
        std::string cmd = argv[1];
        if (cmd == "build")
            return build(o);
        if (cmd == "search")
            return search(o);
    } catch (const std::exception &e) {
        fprintf(stderr, "peers: %s\n", e.what());
        return 1;
    }
    return 2;
}
