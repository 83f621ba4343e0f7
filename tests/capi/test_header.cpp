// The header from C++: included twice (with the RAII layer), compiled with -Wall -Wextra
// -Werror -pedantic, and the RAII layer exercised: errors become exceptions, handles free
// themselves, exceptions thrown in callbacks come back out of generate.
//
//   test_header MODEL
#include "moela.h"
#include "moela.hpp"
#include "moela.h"
#include "moela.hpp"

#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

static int failures = 0;
#define CHECK(c)                                                                           \
    do {                                                                                   \
        if (!(c)) {                                                                        \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);     \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

// The enums are typed in C++ and keep their values.
static_assert(sizeof(moela_status) == 4, "moela_status is 32 bits");
static_assert(MOELA_STATUS_OK == 0 && MOELA_STATUS_PANIC == 9, "stable values");
static_assert(sizeof(moela_sampling_params) == 32, "layout");

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    CHECK(std::string(moela_version()) == MOELA_VERSION);
    CHECK(moela_abi_version() == MOELA_ABI_VERSION);
    try {
        moela::Model bad("/nonexistent/model.gguf");
        CHECK(false);
    } catch (const moela::Error &e) {
        CHECK(e.status() == MOELA_STATUS_IO);
        CHECK(std::strstr(e.what(), "moela_model_load") != nullptr);
    }
    moela::Model model(argv[1]);
    CHECK(model.info().n_vocab == 256);
    moela_session_params sp = moela::default_session_params();
    sp.n_ctx = 64;
    moela::Session session(model, sp);
    moela::Sampler greedy = moela::Sampler::greedy();
    session.eval({1, 2, 3});
    std::vector<float> logits = session.logits();
    CHECK(logits.size() == 256);
    uint32_t first = session.sample(greedy);
    CHECK(first < 256);
    // Constraints need the model's tokenizer (this one has none): a clear error, no change.
    CHECK(!greedy.finished());
    try {
        greedy.set_grammar(model, "root ::= \"a\"");
        CHECK(false);
    } catch (const moela::Error &e) {
        CHECK(e.status() == MOELA_STATUS_INVALID_ARG);
        CHECK(std::strstr(e.what(), "tokenizer") != nullptr);
    }
    greedy.clear_constraint();
    try {
        session.eval({300});
        CHECK(false);
    } catch (const moela::Error &e) {
        CHECK(e.status() == MOELA_STATUS_TOKEN_OUT_OF_RANGE);
    }
    session.reset();
    moela_generate_params gp = moela::default_generate_params();
    gp.max_tokens = 8;
    gp.flags = MOELA_GENERATE_IGNORE_EOS;
    std::vector<uint32_t> got;
    moela_status st = session.generate_tokens(greedy, {1, 2, 3}, gp, [&got](uint32_t t) {
        got.push_back(t);
        return got.size() < 5;
    });
    CHECK(st == MOELA_STATUS_CANCELLED);
    CHECK(got.size() == 5 && got[0] == first);
    CHECK(session.position() == 3 + 4);
    // An exception in the callback stops generation and comes back out.
    try {
        session.generate_tokens(greedy, {}, gp, [](uint32_t) -> bool { throw std::logic_error("mine"); });
        CHECK(false);
    } catch (const std::logic_error &e) {
        CHECK(std::string(e.what()) == "mine");
    }
    // Speculative decoding (prompt lookup): plain greedy's tokens, and the counters.
    {
        moela_generate_params sp = moela::default_generate_params();
        sp.max_tokens = 12;
        sp.flags = MOELA_GENERATE_IGNORE_EOS;
        std::vector<uint32_t> want, spec;
        session.reset();
        session.generate_tokens(greedy, {4, 5, 6, 4, 5, 6, 4, 5}, sp, [&want](uint32_t t) {
            want.push_back(t);
            return true;
        });
        CHECK(session.spec_stats().passes == 0);
        session.reset();
        sp.spec_mode = MOELA_SPEC_LOOKUP;
        sp.max_draft = 3;
        session.generate_tokens(greedy, {4, 5, 6, 4, 5, 6, 4, 5}, sp, [&spec](uint32_t t) {
            spec.push_back(t);
            return true;
        });
        CHECK(spec == want);
        moela_spec_stats ss = session.spec_stats();
        CHECK(ss.spec_mode == MOELA_SPEC_LOOKUP && ss.passes > 0 && ss.accepted <= ss.drafted &&
              ss.emitted == ss.passes + ss.accepted);
        sp.spec_mode = MOELA_SPEC_MTP;
        if (!model.has_mtp()) {
            try {
                session.generate_tokens(greedy, {1}, sp, [](uint32_t) { return true; });
                CHECK(false);
            } catch (const moela::Error &e) {
                CHECK(e.status() == MOELA_STATUS_UNSUPPORTED);
            }
        }
    }
    if (!model.has_tokenizer()) {
        try {
            model.tokenize("hello");
            CHECK(false);
        } catch (const moela::Error &e) {
            CHECK(e.status() == MOELA_STATUS_UNSUPPORTED);
        }
    }
    if (failures) return 1;
    std::printf("test_header: C++ OK\n");
    return 0;
}
