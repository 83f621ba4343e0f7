/*
 * moela.hpp: a small C++11 RAII layer over moela.h (hand-written, header-only).
 *
 * Handles free themselves; a failing call throws moela::Error with the library's status and
 * message; generation callbacks may be any callable, and an exception thrown inside one
 * stops generation and is rethrown from the generate call (it never crosses the C library).
 * The thread-safety rules are moela.h's: share a const Model, give each thread its own
 * Session and Sampler.
 */
#ifndef MOELA_HPP
#define MOELA_HPP

#include "moela.h"

#include <cstdint>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace moela {

/** A failed moela call: the status and moela_last_error()'s message. */
class Error : public std::runtime_error {
  public:
    Error(moela_status status, const std::string &message)
        : std::runtime_error(message), status_(status) {}
    moela_status status() const { return status_; }

  private:
    moela_status status_;
};

/** Throws moela::Error unless `status` is MOELA_STATUS_OK. */
inline void check(moela_status status) {
    if (status != MOELA_STATUS_OK) throw Error(status, moela_last_error());
}

inline moela_model_params default_model_params() {
    moela_model_params p;
    check(moela_model_default_params(&p, sizeof p));
    return p;
}

inline moela_session_params default_session_params() {
    moela_session_params p;
    check(moela_session_default_params(&p, sizeof p));
    return p;
}

inline moela_sampling_params default_sampling_params() {
    moela_sampling_params p;
    check(moela_sampling_default_params(&p, sizeof p));
    return p;
}

inline moela_generate_params default_generate_params() {
    moela_generate_params p;
    check(moela_generate_default_params(&p, sizeof p));
    return p;
}

namespace detail {
struct ModelFree {
    void operator()(moela_model *m) const { moela_model_free(m); }
};
struct SessionFree {
    void operator()(moela_session *s) const { moela_session_free(s); }
};
struct SamplerFree {
    void operator()(moela_sampler *s) const { moela_sampler_free(s); }
};

/* Calls `f` and turns its exception into "stop" plus a saved exception_ptr. */
template <class F> struct Trampoline {
    F *f;
    std::exception_ptr error;
};

template <class F> int32_t token_trampoline(uint32_t token, void *user_data) {
    Trampoline<F> *t = static_cast<Trampoline<F> *>(user_data);
    try {
        return (*t->f)(token) ? 0 : 1;
    } catch (...) {
        t->error = std::current_exception();
        return 1;
    }
}

template <class F> int32_t piece_trampoline(const char *piece, size_t len, void *user_data) {
    Trampoline<F> *t = static_cast<Trampoline<F> *>(user_data);
    try {
        return (*t->f)(std::string(piece, len)) ? 0 : 1;
    } catch (...) {
        t->error = std::current_exception();
        return 1;
    }
}

/* OK and CANCELLED are results; anything else throws. */
inline moela_status finish(moela_status status, const std::exception_ptr &error) {
    if (error) std::rethrow_exception(error);
    if (status != MOELA_STATUS_OK && status != MOELA_STATUS_CANCELLED) check(status);
    return status;
}
} // namespace detail

/** A loaded model. Copies share the same model (it is immutable and thread-safe). */
class Model {
  public:
    explicit Model(const std::string &path, const moela_model_params &params = default_model_params()) {
        moela_model *m = nullptr;
        check(moela_model_load(path.c_str(), &params, &m));
        handle_.reset(m, detail::ModelFree());
    }

    const moela_model *get() const { return handle_.get(); }

    moela_model_info info() const {
        moela_model_info i;
        check(moela_model_get_info(get(), &i, sizeof i));
        return i;
    }

    bool has_tokenizer() const { return (info().flags & MOELA_MODEL_INFO_HAS_TOKENIZER) != 0; }

    /** Whether the model has a multi-token-prediction module (MOELA_SPEC_MTP works). */
    bool has_mtp() const { return (info().flags & MOELA_MODEL_INFO_HAS_MTP) != 0; }

    /** Text to ids; `flags`: MOELA_TOKENIZE_ADD_BOS, MOELA_TOKENIZE_PARSE_SPECIAL. */
    std::vector<uint32_t> tokenize(const std::string &text, uint32_t flags = 0) const {
        size_t n = 0;
        moela_status st = moela_tokenize(get(), text.data(), text.size(), flags, nullptr, 0, &n);
        if (st != MOELA_STATUS_BUFFER_TOO_SMALL) check(st);
        std::vector<uint32_t> ids(n);
        if (n > 0) check(moela_tokenize(get(), text.data(), text.size(), flags, ids.data(), n, &n));
        return ids;
    }

    /** Ids to text. */
    std::string detokenize(const std::vector<uint32_t> &ids) const {
        size_t n = 0;
        moela_status st = moela_detokenize(get(), ids.data(), ids.size(), nullptr, 0, &n);
        if (st != MOELA_STATUS_BUFFER_TOO_SMALL) check(st);
        std::vector<char> buf(n + 1);
        check(moela_detokenize(get(), ids.data(), ids.size(), buf.data(), buf.size(), &n));
        return std::string(buf.data(), n);
    }

    /** Renders (role, content) messages with the model's chat template. */
    std::string apply_chat_template(const std::vector<std::pair<std::string, std::string>> &messages,
                                    bool add_generation_prompt = true) const {
        std::vector<moela_chat_message> msgs;
        for (size_t i = 0; i < messages.size(); i++) {
            moela_chat_message m;
            m.role = messages[i].first.c_str();
            m.content = messages[i].second.c_str();
            msgs.push_back(m);
        }
        uint32_t flags = add_generation_prompt ? MOELA_CHAT_ADD_GENERATION_PROMPT : 0;
        size_t n = 0;
        moela_status st =
            moela_chat_apply_template(get(), msgs.data(), msgs.size(), flags, nullptr, 0, &n);
        if (st != MOELA_STATUS_BUFFER_TOO_SMALL) check(st);
        std::vector<char> buf(n + 1);
        check(moela_chat_apply_template(get(), msgs.data(), msgs.size(), flags, buf.data(),
                                        buf.size(), &n));
        return std::string(buf.data(), n);
    }

  private:
    std::shared_ptr<moela_model> handle_;
};

/** Chooses tokens; one thread at a time. */
class Sampler {
  public:
    explicit Sampler(const moela_sampling_params &params = default_sampling_params()) {
        moela_sampler *s = nullptr;
        check(moela_sampler_new(&params, &s));
        handle_.reset(s);
    }

    static Sampler greedy() {
        moela_sampling_params p = default_sampling_params();
        p.temperature = 0.0f;
        return Sampler(p);
    }

    moela_sampler *get() { return handle_.get(); }
    /** Restarts the random stream and the constraint (if any). */
    void reset() { check(moela_sampler_reset(get())); }

    /** Constrains the output to JSON valid under `schema` (docs/CONSTRAINED.md). */
    void set_json_schema(const Model &model, const std::string &schema) {
        check(moela_sampler_set_json_schema(get(), model.get(), schema.c_str()));
    }
    /** Constrains the output to `grammar` in `syntax`: "gbnf", "lark", "regex", "json_schema". */
    void set_grammar(const Model &model, const std::string &grammar,
                     const std::string &syntax = "gbnf") {
        check(moela_sampler_set_grammar(get(), model.get(), syntax.c_str(), grammar.c_str()));
    }
    void clear_constraint() { check(moela_sampler_clear_constraint(get())); }
    /** Whether the constrained output is complete (false without a constraint). */
    bool finished() const {
        int32_t f = 0;
        check(moela_sampler_is_finished(handle_.get(), &f));
        return f != 0;
    }

  private:
    std::unique_ptr<moela_sampler, detail::SamplerFree> handle_;
};

/** One sequence on a model; one thread at a time. */
class Session {
  public:
    explicit Session(const Model &model,
                     const moela_session_params &params = default_session_params())
        : n_vocab_(model.info().n_vocab) {
        moela_session *s = nullptr;
        check(moela_session_new(model.get(), &params, &s));
        handle_.reset(s);
    }

    moela_session *get() { return handle_.get(); }
    const moela_session *get() const { return handle_.get(); }

    void eval(const std::vector<uint32_t> &tokens) {
        check(moela_session_eval(get(), tokens.data(), tokens.size()));
    }

    std::vector<float> logits() const {
        std::vector<float> out(n_vocab_);
        check(moela_session_logits(get(), out.data(), out.size(), nullptr));
        return out;
    }

    void reset() { check(moela_session_reset(get())); }

    uint32_t position() const {
        uint32_t p = 0;
        check(moela_session_position(get(), &p));
        return p;
    }

    uint32_t n_ctx() const {
        uint32_t n = 0;
        check(moela_session_n_ctx(get(), &n));
        return n;
    }

    /** Speculative decoding's counters since the session was made or reset. */
    moela_spec_stats spec_stats() const {
        moela_spec_stats st;
        check(moela_session_spec_stats(get(), &st, sizeof st));
        return st;
    }

    uint32_t sample(Sampler &sampler) {
        uint32_t t = 0;
        check(moela_sample(get(), sampler.get(), &t));
        return t;
    }

    /**
     * Generates token ids; `on_token(uint32_t)` returns true to continue. Returns
     * MOELA_STATUS_OK or MOELA_STATUS_CANCELLED (stopped by on_token); throws otherwise.
     */
    template <class F>
    moela_status generate_tokens(Sampler &sampler, const std::vector<uint32_t> &prompt,
                                 const moela_generate_params &params, F on_token) {
        detail::Trampoline<F> t = {&on_token, nullptr};
        moela_status st =
            moela_generate_tokens(get(), sampler.get(), prompt.data(), prompt.size(), &params,
                                  &detail::token_trampoline<F>, &t);
        return detail::finish(st, t.error);
    }

    /**
     * Generates text; `on_piece(const std::string &)` returns true to continue. Returns
     * MOELA_STATUS_OK or MOELA_STATUS_CANCELLED (stopped by on_piece); throws otherwise.
     */
    template <class F>
    moela_status generate(Sampler &sampler, const std::string &prompt,
                          const moela_generate_params &params, F on_piece) {
        detail::Trampoline<F> t = {&on_piece, nullptr};
        moela_status st = moela_generate(get(), sampler.get(), prompt.data(), prompt.size(),
                                         &params, &detail::piece_trampoline<F>, &t);
        return detail::finish(st, t.error);
    }

  private:
    std::unique_ptr<moela_session, detail::SessionFree> handle_;
    size_t n_vocab_;
};

} // namespace moela

#endif /* MOELA_HPP */
