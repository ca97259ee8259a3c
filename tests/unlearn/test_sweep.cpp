#include "common/error.h"
#include "eval/plot.h"
#include "tests/test_util.h"
#include "unlearn/sweep.h"

namespace lethe {
namespace {

TEST(Sweep, GridExpandsMethodsRatesStepsAndOptionCombinations) {
  json grid = json::parse(R"({"methods": ["ga", "npo"], "lr": [1e-5, 1e-4], "steps": [10],
                              "options": {"npo": {"npo.beta": [0.1, 0.5], "npo.retain-weight": [1.0, 2.0]}}})");
  auto c = expand_sweep_grid(grid, "g.json", 3e-4, 7);
  ASSERT_EQ(c.size(), 2u + 2u * 4u);  // ga: 2 rates; npo: 2 rates x 2 betas x 2 retain weights
  EXPECT_EQ(c[0].name, "ga_lr1e-05_s10");
  EXPECT_EQ(c[0].options, json::object());
  EXPECT_EQ(c[2].method, "npo");
  EXPECT_EQ(c[2].options, json({{"npo.beta", 0.1}, {"npo.retain-weight", 1.0}}));
  EXPECT_EQ(c[2].name, "npo_lr1e-05_s10_npo.beta0.1_npo.retain-weight1.0");
  // lr and steps default to the command's.
  auto d = expand_sweep_grid(json::parse(R"({"methods": ["gd"]})"), "g.json", 3e-4, 7);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_DOUBLE_EQ(d[0].lr, 3e-4);
  EXPECT_EQ(d[0].steps, 7);
}

TEST(Sweep, PerMethodRatesStepsAndLora) {
  // MemFlex with its own LoRA and rates; gd with the command's LoRA setting and the shared steps.
  json grid = json::parse(R"({"methods": ["gd", "memflex"], "lr": {"memflex": [1e-2, 3e-2]}, "steps": [10, 20],
                              "lora": {"memflex": {"rank": 8, "alpha": 16, "dropout": 0.1}}})");
  auto c = expand_sweep_grid(grid, "g.json", 1e-3, 7);
  ASSERT_EQ(c.size(), 2u + 4u);
  EXPECT_EQ(c[0].name, "gd_lr0.001_s10");
  EXPECT_TRUE(c[0].lora.is_null());
  EXPECT_FALSE(c[0].to_json().contains("lora"));
  EXPECT_EQ(c[2].name, "memflex_lr0.01_s10_lora8");
  EXPECT_EQ(c[5].name, "memflex_lr0.03_s20_lora8");
  EXPECT_EQ(c[2].to_json()["lora"], json({{"rank", 8}, {"alpha", 16}, {"dropout", 0.1}}));
  LoraOptions command;
  command.rank = 0;
  command.target_modules = {"q_proj"};
  command.seed = 5;
  LoraOptions gd = sweep_lora(command, c[0]), mf = sweep_lora(command, c[2]);
  EXPECT_EQ(gd.rank, 0);
  EXPECT_EQ(mf.rank, 8);
  EXPECT_DOUBLE_EQ(mf.alpha, 16);
  EXPECT_DOUBLE_EQ(mf.dropout, 0.1);
  EXPECT_EQ(mf.target_modules, command.target_modules);  // targets and seed stay the command's
  EXPECT_EQ(mf.seed, 5u);
  // alpha and dropout default to peft's usual 16 and 0.1.
  auto d = expand_sweep_grid(json::parse(R"({"methods": ["memflex"], "lora": {"memflex": {"rank": 4}}})"), "g.json",
                             1e-3, 7);
  EXPECT_EQ(d[0].lora, json({{"rank", 4}, {"alpha", 16.0}, {"dropout", 0.1}}));
}

TEST(Sweep, BadGridsAreNamed) {
  auto msg = [](const std::string& text) {
    try {
      expand_sweep_grid(json::parse(text), "g.json", 1e-4, 5);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(msg(R"({"methods": []})").find("'methods' must be a non-empty list"), std::string::npos);
  EXPECT_NE(msg(R"({"methods": ["ga"], "steps": [2.5]})").find("'steps' holds 2.5"), std::string::npos);
  EXPECT_NE(msg(R"({"methods": ["ga"], "options": {"npo": {}}})").find("not in 'methods'"), std::string::npos);
  EXPECT_NE(msg(R"({"methods": ["ga"], "lr": [1e-4, 1e-4]})").find("both named 'ga_lr0.0001_s5'"), std::string::npos);
  EXPECT_NE(msg(R"({"methods": ["npo"], "options": {"npo": {"npo.beta": []}}})").find("non-empty list"),
            std::string::npos);
  EXPECT_NE(msg(R"({"methods": ["ga"], "lr": {"npo": [1e-4]}})").find("'lr' names method 'npo'"), std::string::npos);
  EXPECT_NE(msg(R"({"methods": ["ga"], "steps": {"ga": [0]}})").find("'steps.ga' holds 0"), std::string::npos);
  EXPECT_NE(msg(R"({"methods": ["ga"], "lora": {"ga": {"rank": 0}}})").find("'lora.ga': 'rank' must be a positive"),
            std::string::npos);
  EXPECT_NE(msg(R"({"methods": ["ga"], "lora": {"ga": {"rank": 8, "dropout": 1}}})").find("'dropout' must be"),
            std::string::npos);
  EXPECT_NE(msg(R"({"methods": ["ga"], "lora": {"ga": {"rank": 8, "targets": 1}}})").find("unknown field 'targets'"),
            std::string::npos);
  EXPECT_NE(msg(R"({"methods": ["ga"], "lora": {"npo": {"rank": 8}}})").find("'lora' names method 'npo'"),
            std::string::npos);
  EXPECT_EQ(msg(R"({"methods": ["ga"]})"), "accepted");
}

TEST(Sweep, ParetoFrontAndTable) {
  // (x, y) maximised: (1, 1) dominates (0.5, 0.5); (0, 2) and (2, 0) are on the front; ties stay.
  std::vector<std::pair<double, double>> p = {{1, 1}, {0.5, 0.5}, {0, 2}, {2, 0}, {1, 1}, {0, 1.5}};
  EXPECT_EQ(pareto_front(p), (std::vector<size_t>{0, 2, 3, 4}));
  json rows = json::array();
  for (auto [fprob, racc, mu] : {std::tuple{0.9, 0.9, 0.5}, std::tuple{0.1, 0.8, 0.4}, std::tuple{0.5, 0.9, 0.3}})
    rows.push_back(
        {{"name", "r"},
         {"method", "ga"},
         {"lr", 1e-4},
         {"steps", 2},
         {"options", json::object()},
         {"summary", {{"forget", {{"accuracy", 0.5}, {"answer_prob", fprob}}}, {"retain", {{"accuracy", racc}}}}},
         {"tofu", {{"model_utility", mu}}}});
  json t = sweep_table(rows, false);
  EXPECT_NEAR(t[0]["x"].get<double>(), 0.1, 1e-12);
  EXPECT_DOUBLE_EQ(t[1]["y"].get<double>(), 0.4);
  EXPECT_EQ(t[0]["pareto"], true);
  EXPECT_EQ(t[1]["pareto"], true);
  EXPECT_EQ(t[2]["pareto"], false);  // (0.5, 0.3) is below (0.9, 0.4)
  std::string svg = scatter_plot_svg("t", "x", "y", {{"a", 0, 1, true}, {"b", 1, 0, false}});
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("<title>a</title>"), std::string::npos);
}

}  // namespace
}  // namespace lethe
