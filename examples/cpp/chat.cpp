// A terminal chat with moela from C++, through the RAII layer include/moela.hpp.
//
//   chat MODEL [--system TEXT] [-n MAX_TOKENS] [--temp T]
//
// Each line on stdin is a user turn; the reply streams to stdout. The whole conversation is
// rendered with the model's chat template each turn. A model without a tokenizer (like the
// test fixtures) can still be driven: each line is then a list of token ids, the reply is
// printed as ids, and the session keeps the whole exchange.
//
// Build: c++ -std=c++11 chat.cpp $(pkg-config --cflags --libs moela) -o chat
#include <moela.hpp>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

int main(int argc, char **argv) {
    if (argc < 2) {
        std::cerr << "usage: " << argv[0] << " MODEL [--system TEXT] [-n N] [--temp T]\n";
        return 2;
    }
    std::string system;
    moela_generate_params gen = moela::default_generate_params();
    moela_sampling_params sampling = moela::default_sampling_params();
    gen.max_tokens = 256;
    for (int i = 2; i < argc; i++) {
        if (!std::strcmp(argv[i], "--system") && i + 1 < argc) system = argv[++i];
        else if (!std::strcmp(argv[i], "-n") && i + 1 < argc) gen.max_tokens = static_cast<uint32_t>(std::atoi(argv[++i]));
        else if (!std::strcmp(argv[i], "--temp") && i + 1 < argc) sampling.temperature = static_cast<float>(std::atof(argv[++i]));
        else {
            std::cerr << "unknown argument " << argv[i] << "\n";
            return 2;
        }
    }
    try {
        moela::Model model(argv[1]);
        moela::Session session(model);
        moela::Sampler sampler(sampling);
        std::string line;

        if (!model.has_tokenizer()) {
            // Token mode: ids in, ids out, one growing sequence.
            std::cerr << "(this model has no tokenizer: type token ids)\n";
            gen.flags |= MOELA_GENERATE_IGNORE_EOS;
            while (std::getline(std::cin, line)) {
                std::vector<uint32_t> ids;
                std::istringstream in(line);
                unsigned long v;
                while (in >> v) ids.push_back(static_cast<uint32_t>(v));
                if (ids.empty()) continue;
                session.generate_tokens(sampler, ids, gen, [](uint32_t t) {
                    std::cout << t << ' ' << std::flush;
                    return true;
                });
                std::cout << std::endl;
            }
            return 0;
        }

        std::vector<std::pair<std::string, std::string>> history;
        if (!system.empty()) history.push_back(std::make_pair(std::string("system"), system));
        gen.flags |= MOELA_GENERATE_PARSE_SPECIAL;
        std::cout << "> " << std::flush;
        while (std::getline(std::cin, line)) {
            history.push_back(std::make_pair(std::string("user"), line));
            std::string prompt = model.apply_chat_template(history, true);
            std::string reply;
            session.reset();
            session.generate(sampler, prompt, gen, [&reply](const std::string &piece) {
                std::cout << piece << std::flush;
                reply += piece;
                return true;
            });
            history.push_back(std::make_pair(std::string("assistant"), reply));
            std::cout << "\n> " << std::flush;
        }
    } catch (const moela::Error &e) {
        std::cerr << "error (" << moela_status_string(e.status()) << "): " << e.what() << "\n";
        return 1;
    }
    return 0;
}
