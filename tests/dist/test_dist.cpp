// Multi-rank tests, run by ctest under `mpirun -np 1|2|4 --oversubscribe` on the CPU machine.
// Every rank runs every test; a failure on any rank fails the run.
#include <mpi.h>

#include "common/error.h"
#include "common/rng.h"
#include "data/bpe_trainer.h"
#include "dist/mpi_env.h"
#include "dist/process_groups.h"
#include "checkpoints/model_io.h"
#include "dist/sharded_checkpoint.h"
#include "eval/report_writer.h"
#include "checkpoints/peft_adapter.h"
#include "model/quantize.h"
#include "merge/merge_io.h"
#include "unlearn/run.h"
#include "unlearn/trainer.h"
#include "tests/test_util.h"

namespace lethe {
namespace {

int world_size() { return make_world_communicator()->size(); }

TEST(Collectives, AllReduceReduceScatterAllGatherBroadcast) {
  auto comm = make_world_communicator();
  const int N = comm->size(), r = comm->rank();
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    auto t = torch::full({5}, double(r + 1)).to(dtype);
    comm->all_reduce(t, ReduceOp::Sum);
    EXPECT_TRUE(torch::allclose(t.to(torch::kFloat), torch::full({5}, N * (N + 1) / 2.0)));
    auto a = torch::full({3}, double(r + 1)).to(dtype);
    comm->all_reduce(a, ReduceOp::Average);
    EXPECT_TRUE(torch::allclose(a.to(torch::kFloat), torch::full({3}, (N + 1) / 2.0)));
    // reduce_scatter: every rank contributes arange(N*2); block r of the sum is N * [2r, 2r+1].
    auto in = torch::arange(N * 2).to(dtype), out = torch::empty({2}, dtype);
    comm->reduce_scatter(in, out, ReduceOp::Sum);
    EXPECT_TRUE(torch::allclose(out.to(torch::kFloat), torch::tensor({2.0f * r * N, (2.0f * r + 1) * N})));
    auto mine = torch::full({2}, double(r)).to(dtype), all = torch::empty({2 * N}, dtype);
    comm->all_gather(mine, all);
    for (int q = 0; q < N; ++q) EXPECT_EQ(all[2 * q].item<float>(), float(q));
  }
  auto b = torch::full({4}, r == 0 ? 7.0 : -1.0, torch::kLong);
  comm->broadcast(b, 0);
  EXPECT_TRUE(torch::equal(b, torch::full({4}, 7, torch::kLong)));
  comm->barrier();
}

TEST(ProcessGroups, ContiguousGroupsAndMergeCommunicators) {
  const int N = world_size();
  std::vector<int> sizes = N >= 2 ? std::vector<int>{N / 2, N - N / 2} : std::vector<int>{1};
  ProcessGroups pg = make_process_groups(sizes, *make_world_communicator());
  const int r = pg.world->rank();
  int expect_group = N >= 2 && r >= N / 2 ? 1 : 0;
  EXPECT_EQ(pg.group, expect_group);
  EXPECT_EQ(pg.group_comm->size(), sizes[size_t(expect_group)]);
  // The merge communicator joins local index i of every group: it reduces over groups.
  auto t = torch::full({1}, double(pg.group + 1));
  pg.merge_comm->all_reduce(t, ReduceOp::Sum);
  EXPECT_EQ(t.item<float>(), N >= 2 && pg.merge_comm->size() == 2 ? 3.0f : float(pg.group + 1));
  EXPECT_THROW(make_process_groups({N + 1}, *make_world_communicator()), InputError);
}

// ---- training equivalence ----

ModelConfig tiny_config() {
  json j = {{"model_type", "llama"},  {"vocab_size", 40},         {"hidden_size", 32},       {"intermediate_size", 48},
            {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2}};
  return ModelConfig::from_json(j, "tiny");
}

std::vector<TokenizedItem> items(uint64_t seed, int n) {
  SplitMix64 rng(seed);
  std::vector<TokenizedItem> out;
  for (int i = 0; i < n; ++i) {
    TokenizedItem it;
    int len = 6 + int(rng.below(6));
    for (int t = 0; t < len; ++t) it.ids.push_back(int64_t(rng.below(40)));
    it.prompt_len = 2 + int64_t(rng.below(3));
    out.push_back(it);
  }
  return out;
}

CausalLM fresh_model() {
  CausalLM m(tiny_config());
  m->init_weights(5);
  return m;
}

TrainOptions options(int stage, const std::string& ckpt = "") {
  TrainOptions o;
  o.steps = 10;
  o.batch_size = 4;
  o.grad_accum = 2;
  o.seed = 3;
  o.zero_stage = stage;
  o.log_every = 1000;
  o.schedule.lr = 5e-3;
  o.schedule.warmup_steps = 2;
  o.optimizer.weight_decay = 0.01;
  o.checkpoint_dir = ckpt;
  return o;
}

std::unique_ptr<Objective> objective(const std::string& name) {
  if (name == "nll") return nll_objective_spec().make();
  return find_objective(name).make();  // the method's defaults
}

std::map<std::string, torch::Tensor> params(CausalLM& m) {
  std::map<std::string, torch::Tensor> out;
  for (auto& [n, p] : m->named_weights()) out[n] = p.detach().clone();
  return out;
}

double max_rel_error(const std::map<std::string, torch::Tensor>& a, const std::map<std::string, torch::Tensor>& b) {
  double worst = 0;
  for (auto& [n, t] : a) worst = std::max(worst, test::rel_error(t, b.at(n)));
  return worst;
}

std::map<std::string, torch::Tensor> train(const std::string& method, Communicator& comm, const TrainOptions& o,
                                           const std::vector<TokenizedItem>& f, const std::vector<TokenizedItem>& r,
                                           std::function<bool(int64_t)> on_eval = {}) {
  CausalLM m = fresh_model();
  auto obj = objective(method);
  EvalHook hook;
  if (on_eval) hook.run = [&](CausalLM&, int64_t step) { return EvalVerdict{on_eval(step), false}; };
  train_loop(m, *obj, f, obj->uses_retain() ? &r : nullptr, o, 0, hook, comm);
  return params(m);
}

class Equivalence : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(Equivalence, NRanksMatchOneProcess) {
  auto [method, stage] = GetParam();
  auto f = items(1, 13), r = items(2, 9);
  auto self = make_self_communicator();
  auto world = make_world_communicator();
  auto ref = train(method, *self, options(0), f, r);
  auto got = train(method, *world, options(stage), f, r);
  double err = max_rel_error(got, ref);
  EXPECT_LT(err, 1e-5) << method << " ZeRO " << stage << " on " << world->size() << " ranks";
  if (world->rank() == 0)
    std::cout << "[ equivalence ] " << method << " ZeRO " << stage << ", " << world->size()
              << " ranks vs 1: max rel err " << err << "\n";
}

INSTANTIATE_TEST_SUITE_P(MethodsAndStages, Equivalence,
                         ::testing::Combine(::testing::Values("nll", "gd"), ::testing::Values(0, 1, 2, 3)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_zero" + std::to_string(std::get<1>(info.param));
                         });

// Activation checkpointing recomputes layers in backward: the trained model equals the one
// trained with the activations kept, on the same ranks and stage (with and without LoRA, whose
// dropout masks the recompute replays). One process against N ranks is the Equivalence suite's.
class Checkpointing : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(Checkpointing, RecomputeTrainsTheSameModel) {
  auto [mode, stage] = GetParam();
  auto f = items(6, 13), r = items(7, 9);
  auto world = make_world_communicator();
  for (bool lora : {false, true}) {
    auto run = [&](ActivationCheckpointing recompute) {
      CausalLM m = fresh_model();
      if (lora) m->add_lora(LoraOptions{4, 8.0, 0.1, 11, {}});
      auto obj = objective("gd");
      auto o = options(stage);
      o.activation_checkpointing = recompute;
      train_loop(m, *obj, f, &r, o, 0, {}, *world);
      m->merge_lora();
      return params(m);
    };
    auto kept = run(ActivationCheckpointing::kNone);
    double err = max_rel_error(run(parse_activation_checkpointing(mode)), kept);
    EXPECT_LT(err, 1e-6) << mode << " ZeRO " << stage << (lora ? " LoRA" : "");
    if (world->rank() == 0)
      std::cout << "[ equivalence ] activation checkpointing " << mode << (lora ? " + LoRA" : "") << ", ZeRO " << stage
                << ", " << world->size() << " ranks vs the same without: max rel err " << err << "\n";
  }
}

INSTANTIATE_TEST_SUITE_P(ModesAndStages, Checkpointing,
                         ::testing::Combine(::testing::Values("selective", "full"), ::testing::Values(0, 1, 2, 3)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_zero" + std::to_string(std::get<1>(info.param));
                         });

std::string shared_temp(const std::string& tag) {
  // Rank 0 picks the directory; everyone uses it.
  auto comm = make_world_communicator();
  std::string dir = (fs::temp_directory_path() / ("lethe_dist_" + tag + "_" + std::to_string(::getpid()))).string();
  auto buf = torch::zeros({256}, torch::kByte);
  if (comm->rank() == 0) {
    fs::remove_all(dir);
    std::memcpy(buf.data_ptr(), dir.data(), dir.size());
  }
  comm->broadcast(buf, 0);
  return std::string(static_cast<const char*>(buf.data_ptr()));
}

class Resume : public ::testing::TestWithParam<int> {};

TEST_P(Resume, SameRankCountIsBitIdenticalOtherCountWithinTolerance) {
  const int stage = GetParam();
  auto world = make_world_communicator();
  auto f = items(4, 11), r = items(5, 7);
  auto full = train("gd", *world, options(stage), f, r);

  // Same rank count: stop after step 5 (checkpointed), resume to 10.
  std::string dir = shared_temp("resume" + std::to_string(stage));
  auto o = options(stage, dir);
  o.checkpoint_every = 5;
  o.eval_every = 5;
  train("gd", *world, o, f, r, [](int64_t step) { return step == 5; });
  ASSERT_FALSE(latest_complete_checkpoint(dir).empty());
  o.resume = true;
  o.eval_every = 0;
  auto resumed = train("gd", *world, o, f, r);
  for (auto& [n, t] : full) EXPECT_TRUE(torch::equal(t, resumed.at(n))) << n << " differs after resume";

  // Another rank count: one process writes step 5, all ranks resume with this stage.
  std::string dir1 = shared_temp("reshard" + std::to_string(stage));
  if (world->rank() == 0) {
    auto self = make_self_communicator();
    auto o1 = options(0, dir1);
    o1.checkpoint_every = 5;
    o1.eval_every = 5;
    train("gd", *self, o1, f, r, [](int64_t step) { return step == 5; });
  }
  world->barrier();
  auto o2 = options(stage, dir1);
  o2.resume = true;
  auto resharded = train("gd", *world, o2, f, r);
  EXPECT_LT(max_rel_error(resharded, full), 1e-5);
  world->barrier();
  if (world->rank() == 0) {
    fs::remove_all(dir);
    fs::remove_all(dir1);
  }
}

INSTANTIATE_TEST_SUITE_P(Stages, Resume, ::testing::Values(0, 1, 2, 3));

// ZeRO 3 without a whole copy: the decoder layers are read from the checkpoint straight into
// each rank's shard (load_model_without_layers), trained sharded (with a step's weights kept and
// returned by checkpoint selection) and saved from the shards one layer at a time
// (save_model_from_engine, several output shards). The saved model is bit-identical to the one
// trained from a whole load and materialized, in both formats; npo's reference values and pdu's
// starting retain loss come from forward passes through the engine built before prepare(),
// gathering one layer at a time (pdu's on every rank, the whole load's split across the ranks:
// the same epsilon), and tvn negates each rank's shard against its theta_0 shard (with LoRA:
// the adapters, through their scale, before they are merged). With
// LoRA the frozen base weights are shards too, the output has the adapters merged as merge_lora
// merges them, and the adapters gathered from the shards equal the whole run's. rmu trains one
// matrix and steers layer 1's output, so the other layer has nothing to train and is sharded as
// frozen parameters alone: below the trained one (rmu_top: no gradient flows through it) or
// above it (rmu: recomputed in backward for the gradient that flows through it); both equal a
// ZeRO 0 run, where every layer is whole, to rounding. memflex reusing a saved localization
// trains one LoRA matrix pair of layer 1: layer 0, its adapters included, is frozen shards.
// memflex locating its matrices (memflex_locate) does so through a first engine over every
// adapter (make_sharded_engine): the same localization as the whole run's autograd pass (the
// same choice, cosines and magnitudes within 1e-5) and so the same training.
class ShardedLoad : public ::testing::TestWithParam<std::tuple<std::string, std::string, bool>> {};

TEST_P(ShardedLoad, TrainsAndSavesWhatAWholeLoadDoes) {
  const auto [format_name, method, lora] = GetParam();
  const auto format = parse_checkpoint_format(format_name, "format");
  auto world = make_world_communicator();
  auto f = items(8, 13), r = items(9, 9);
  const std::string root = shared_temp("sharded_" + format_name + method + (lora ? "_lora" : ""));
  const std::string base = root + "/base", out = root + "/out";
  if (world->rank() == 0) {
    CausalLM m = fresh_model();
    save_model(m, base, format, json::object(), "", 6000);
  }
  world->barrier();
  auto o = options(3);
  o.eval_every = 5;
  EvalHook keep5;  // checkpoint selection: the weights of step 5 are the output
  keep5.run = [](CausalLM&, int64_t step) { return EvalVerdict{false, step == 5}; };
  const std::map<std::string, Objective::WeightUse> uses = {{"gd", Objective::WeightUse::kNone},
                                                            {"npo", Objective::WeightUse::kSameForwardOnEveryRank},
                                                            {"pdu", Objective::WeightUse::kSameForwardOnEveryRank},
                                                            {"rmu", Objective::WeightUse::kSameForwardOnEveryRank},
                                                            {"rmu_top", Objective::WeightUse::kSameForwardOnEveryRank},
                                                            {"memflex", Objective::WeightUse::kNone},
                                                            {"memflex_locate", Objective::WeightUse::kNone},
                                                            {"tvn", Objective::WeightUse::kShardwise}};
  const std::string located = root + "/located.json";  // memflex: a saved localization, layer 1's q_proj
  if (method == "memflex" && world->rank() == 0)
    write_json_file(
        located,
        {{"selected",
          {"model.layers.1.self_attn.q_proj.lora_A.weight", "model.layers.1.self_attn.q_proj.lora_B.weight"}}});
  world->barrier();
  auto make = [&]() {
    if (method == "memflex_locate")
      return find_objective("memflex").make(MethodOptions(find_objective("memflex").options, {{"memflex.sigma", 0.0}}));
    if (method == "memflex")
      return find_objective("memflex").make(
          MethodOptions(find_objective("memflex").options, {{"memflex.localization", located}}));
    if (method.rfind("rmu", 0) != 0) return objective(method);
    const std::string trained = method == "rmu" ? "0" : "1";
    return find_objective("rmu").make(MethodOptions(
        find_objective("rmu").options, {{"rmu.layer", 1},
                                        {"rmu.alpha", 10.0},
                                        {"rmu.train", "model\\.layers\\." + trained + "\\.mlp\\.down_proj\\.weight"}}));
  };
  ASSERT_EQ(make()->weight_use_outside_training(), uses.at(method));
  LoraOptions lo;
  lo.rank = 4;
  lo.dropout = 0;  // the same masks on any rank count
  lo.seed = 7;
  // memflex draws its random labels below the tokenizer's vocabulary size.
  const Tokenizer tok = Tokenizer::from_json(train_bpe_tokenizer({"ab cd ef"}, BpeTrainOptions{260}), "t");
  // Every rank caches every item, in the same order.
  auto context = [&](std::vector<TokenizedItem>& ff, std::vector<TokenizedItem>& rr) {
    ObjectiveContext ctx;
    ctx.tok = &tok;
    ctx.seed = 11;
    ctx.forget = &ff;
    ctx.retain = &rr;
    for (int64_t i = 0; i < int64_t(ff.size()); ++i) ctx.forget_used.push_back(i);
    for (int64_t i = 0; i < int64_t(rr.size()); ++i) ctx.retain_used.push_back(i);
    ctx.comm = world.get();
    return ctx;
  };

  // A whole load trained with `opts` (adapters not merged yet), its objective and run identity.
  auto train_whole = [&](const TrainOptions& opts) {
    CausalLM w = load_model(base);
    if (lora) w->add_lora(lo);
    auto ob = make();
    ob->choose_trained(w);
    auto c = context(f, r);
    ob->prepare(w, c);
    json id = run_identity(w, f, &r, opts, nullptr);
    train_loop(w, *ob, f, &r, opts, 0, keep5, *world);
    return std::make_tuple(w, std::move(ob), id);
  };
  auto [whole, obj, whole_identity] = train_whole(o);
  std::map<std::string, torch::Tensor> want_adapters;
  if (lora)
    for (auto& [n, t] : params(whole))
      if (is_lora_parameter(n)) want_adapters[n] = t;
  if (lora) obj->finish_adapters(whole);
  whole->merge_lora();
  obj->finish(whole);
  auto want = params(whole);
  if (method.rfind("rmu", 0) == 0 || method.rfind("memflex", 0) == 0) {
    // The layers with nothing to train are ZeRO 3 shards in both runs above; against ZeRO 0,
    // where every layer is whole, the result agrees to rounding.
    auto o0 = options(0);
    o0.eval_every = 5;
    auto [plain, obj0, id0] = train_whole(o0);
    plain->merge_lora();
    EXPECT_LT(max_rel_error(params(plain), want), 1e-5);
    CausalLM start = load_model(base);
    EXPECT_GT(max_rel_error(params(start), want), 1e-4);  // it trained
  }

  DeferredWeights deferred;
  CausalLM m = load_model_without_layers(base, "", deferred);
  EXPECT_EQ(deferred.shapes.size(), size_t(2 * 9));  // 2 layers x (7 projections + 2 norms)
  for (auto& [name, t] : m->named_weights()) {
    EXPECT_EQ(t.numel() == 0, deferred.has(name)) << name;
  }
  if (lora) m->add_lora(lo);
  auto obj2 = make();
  obj2->choose_trained(m);
  const json identity = run_identity(m, f, &r, o, &deferred);
  EXPECT_EQ(identity, whole_identity);  // a resume may switch between the two
  auto ctx2 = context(f, r);
  auto engine = make_sharded_engine(m, *obj2, ctx2, *world, o, deferred);
  engine->set_overlap(true);  // gathers started early, gradient reduce-scatters finished late: the same values
  obj2->prepare(m, ctx2);     // through the engine when it reads the model
  if (method == "memflex_locate") {
    const json a = obj->describe().at("memflex_localization"), b = obj2->describe().at("memflex_localization");
    ASSERT_FALSE(a.at("selected").empty());
    EXPECT_LT(a.at("selected").size(), a.at("matrices").size());  // a choice: not every matrix
    EXPECT_EQ(a.at("selected"), b.at("selected"));
    for (auto& [name, v] : a.at("matrices").items()) {
      // float32 gradients summed in another order (per pass across ranks, then over passes)
      EXPECT_NEAR(v.at("cos").get<double>(), b.at("matrices").at(name).at("cos").get<double>(), 1e-5) << name;
      EXPECT_NEAR(v.at("mag").get<double>(), b.at("matrices").at(name).at("mag").get<double>(),
                  1e-5 * std::abs(v.at("mag").get<double>()))
          << name;
    }
  }
  TrainResult res = train_loop(m, *obj2, f, &r, o, 0, keep5, *world, &engine, &identity);
  EXPECT_EQ(res.kept_step, 5);
  ASSERT_TRUE(engine);
  for (auto& [name, t] : m->named_parameters(true).pairs()) {
    if (deferred.has(name) || is_lora_parameter(name)) {
      EXPECT_EQ(t.numel(), 0) << name << " was gathered whole";
    }
  }
  if (lora) {
    auto adapters = gather_adapters(*engine);
    ASSERT_EQ(adapters.size(), want_adapters.size());
    for (auto& [n, t] : want_adapters) EXPECT_TRUE(torch::equal(t, adapters.at(n))) << n << " differs";
  }
  if (lora) obj2->finish_adapters(m);
  obj2->finish_shards(*engine);
  save_model_from_engine(*engine, out, format, json::object(), "", 6000, *world);
  EXPECT_THROW(save_model_from_engine(*engine, out, format, json::object(), "", 6000, *world), InputError);
  CausalLM saved = load_model(out);
  auto got = params(saved);
  ASSERT_EQ(got.size(), want.size());
  for (auto& [n, t] : want) EXPECT_TRUE(torch::equal(t, got.at(n))) << n << " differs";
  world->barrier();
  if (world->rank() == 0) fs::remove_all(root);
}

std::string sharded_load_name(const ::testing::TestParamInfo<ShardedLoad::ParamType>& info) {
  return std::get<0>(info.param) + "_" + std::get<1>(info.param) + (std::get<2>(info.param) ? "_lora" : "");
}
INSTANTIATE_TEST_SUITE_P(FormatsAndMethods, ShardedLoad,
                         ::testing::Combine(::testing::Values("native", "hf"), ::testing::Values("gd", "npo", "pdu"),
                                            ::testing::Bool()),
                         sharded_load_name);
// rmu and memflex: decoder layers with nothing to train (the frozen-only ZeRO 3 blocks).
INSTANTIATE_TEST_SUITE_P(FrozenLayers, ShardedLoad,
                         ::testing::Combine(::testing::Values("native", "hf"), ::testing::Values("rmu", "rmu_top"),
                                            ::testing::Values(false)),
                         sharded_load_name);
INSTANTIATE_TEST_SUITE_P(FrozenAdapters, ShardedLoad,
                         ::testing::Combine(::testing::Values("native", "hf"),
                                            ::testing::Values("memflex", "memflex_locate"), ::testing::Values(true)),
                         sharded_load_name);
// tvn's negation acts on the shards, or with LoRA on the adapters' scale before they are merged
// (layer by layer as the shards are saved).
INSTANTIATE_TEST_SUITE_P(ShardwiseFinish, ShardedLoad,
                         ::testing::Combine(::testing::Values("native", "hf"), ::testing::Values("tvn"),
                                            ::testing::Bool()),
                         sharded_load_name);

TEST(Groups, TwoGroupsTrainTwoSubsetsConcurrently) {
  const int N = world_size();
  if (N < 2 || N % 2) GTEST_SKIP() << "needs an even number of ranks (ctest runs it on 2 and 4)";
  ProcessGroups pg = make_process_groups({N / 2, N / 2}, *make_world_communicator());
  std::vector<std::vector<TokenizedItem>> subsets = {items(10, 9), items(11, 12)};
  auto r = items(12, 8);
  auto mine = train("gd", *pg.group_comm, options(1), subsets[size_t(pg.group)], r);
  auto self = make_self_communicator();
  auto alone = train("gd", *self, options(0), subsets[size_t(pg.group)], r);
  EXPECT_LT(max_rel_error(mine, alone), 1e-5) << "group " << pg.group;
  auto other = train("gd", *self, options(0), subsets[size_t(1 - pg.group)], r);
  EXPECT_GT(max_rel_error(mine, other), 1e-3);  // the groups really trained different data
}

// theta_g of group g: the base weights plus seeded noise (the same on every rank of the group).
std::map<std::string, torch::Tensor> perturbed(const TensorReader& base, int g) {
  torch::manual_seed(uint64_t(100 + g));
  std::map<std::string, torch::Tensor> out;
  for (auto& [name, info] : base.tensors()) {
    auto b = base.read(name);
    out[name] = b + 0.01 * torch::randn(b.sizes(), b.options());
  }
  return out;
}

class ShardedMerge : public ::testing::TestWithParam<std::string> {};

// The sharded in-memory merge of `lethe spunge` (merge communicators, parts of the tensors,
// output shards written by their owners, assembled by rank 0) equals merging the same K deltas in one
// process with the same rule, bit for bit, for every group layout this world allows.
TEST_P(ShardedMerge, EqualsSingleProcessMerge) {
  const int N = world_size();
  std::vector<std::vector<int>> layouts;
  for (int k = 2; k <= N; ++k)
    if (N % k == 0) layouts.push_back(std::vector<int>(size_t(k), N / k));
  if (N == 3) layouts.push_back({2, 1});
  if (layouts.empty()) GTEST_SKIP() << "needs 2 or more ranks (ctest runs it on 2 and 4)";
  auto world = make_world_communicator();
  std::string dir = shared_temp("merge_" + GetParam());
  if (world->rank() == 0) {
    CausalLM model(tiny_config());
    model->init_weights(3);
    save_model(model, dir + "/base", CheckpointFormat::kHf, json::object(), "");
  }
  world->barrier();
  TensorReader base(dir + "/base");
  MergeOptions mopt;
  mopt.method = GetParam();
  mopt.density = 0.4;
  mopt.seed = 11;
  for (size_t l = 0; l < layouts.size(); ++l) {
    const auto& sizes = layouts[l];
    const size_t K = sizes.size();
    mopt.weights.assign(K, 1.0);
    mopt.weights[0] = 2.0;
    auto rule = make_merge_method(mopt, K);
    ProcessGroups pg = make_process_groups(sizes, *make_world_communicator());
    const std::string out = dir + "/out" + std::to_string(l);
    MergeOutput mo = plan_merge_output(base, out, CheckpointFormat::kHf, 2000);  // several shards
    ASSERT_GT(mo.shards.size(), 2u);
    json job = {{"layout", sizes}, {"method", mopt.method}};
    open_merge_output(mo, job, *world);
    const int S = *std::min_element(sizes.begin(), sizes.end());
    if (pg.group_comm->rank() < S)
      merge_sharded(base, perturbed(base, pg.group), *rule, mo, job, *pg.merge_comm, pg.group_comm->rank(), S);
    world->barrier();
    assemble_merge_output(mo, base, job, *world);
    if (world->rank() == 0) {
      std::vector<std::map<std::string, torch::Tensor>> thetas;
      for (size_t g = 0; g < K; ++g) thetas.push_back(perturbed(base, int(g)));
      TensorReader merged(out);
      require_same_tensors(base, merged);
      for (auto& name : mo.names) {
        auto b = base.read(name);
        std::vector<torch::Tensor> deltas;
        for (auto& th : thetas) deltas.push_back(th.at(name) - b);
        auto want = apply_delta(b, rule->merge(name, deltas));
        EXPECT_TRUE(torch::equal(merged.read(name), want)) << name << " with groups " << json(sizes).dump();
      }
    }
    world->barrier();
  }
  if (world->rank() == 0) fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Rules, ShardedMerge, ::testing::Values("ties", "dare_ties", "task_arithmetic"));

// A model evaluated at ZeRO 3 (load_sharded_eval_model) is changed one gathered layer at a time
// (update_frozen_layers), as the probe quantizes it: the shards each rank keeps are what
// quantizing the whole model gives, bit for bit, and so is the summary. With a peft adapter
// attached the layer is quantized as merged (the whole model merges the adapter first): the base
// weight plus the adapter's delta is the merged model's quantized weight, to fp32 rounding (the
// delta itself may differ in the last bit, see below).
class ShardedEval : public ::testing::TestWithParam<bool> {};

TEST_P(ShardedEval, QuantizesOneGatheredLayerAtATime) {
  const bool adapter = GetParam();
  auto world = make_world_communicator();
  const std::string root = shared_temp(adapter ? "sharded_eval_lora" : "sharded_eval");
  const ModelLoadOptions m{root + "/base", "float32", adapter ? root + "/adapter" : ""};
  if (world->rank() == 0) {
    CausalLM base = fresh_model();
    save_model(base, m.dir, CheckpointFormat::kHf, json::object(), "", 6000);
    if (adapter) {
      LoraOptions lo;
      lo.rank = 4;
      lo.seed = 7;
      base->add_lora(lo);
      torch::NoGradGuard ng;
      for (auto& [name, lin] : base->linear_layers())
        if (lin->has_lora()) lin->lora_B->weight.normal_(0, 0.05);  // a delta that changes the rounding
      save_peft_adapter(base, m.adapter, m.dir);
    }
  }
  world->barrier();
  auto sharded = load_sharded_eval_model(m, torch::kCPU, *world, false);
  ASSERT_TRUE(sharded->engine->sharded());
  std::vector<int64_t> layers;
  QuantizeSummary q;
  sharded->engine->update_frozen_layers([&](int64_t layer) {
    layers.push_back(layer);
    q += quantize_linear_weights(sharded->model, QuantFormat::kNf4, 64, layer);
  });
  EXPECT_EQ(layers, (std::vector<int64_t>{0, 1}));
  sharded->engine->materialize();
  CausalLM whole = load_eval_model(m, torch::kCPU);  // the adapter merged
  const QuantizeSummary w = quantize_linear_weights(whole, QuantFormat::kNf4);
  EXPECT_EQ(q.tensors, w.tensors);
  EXPECT_EQ(q.elements, w.elements);
  // With an adapter its delta B A is a GEMM on the gathered buffer's views there, on the whole
  // model's own tensors here: MKL may sum in another order, so the merged weights agree to rounding.
  if (adapter)
    EXPECT_NEAR(q.relative_error(), w.relative_error(), 1e-6 * w.relative_error());
  else
    EXPECT_EQ(q.relative_error(), w.relative_error());
  std::map<std::string, torch::Tensor> got;
  for (auto& [name, lin] : sharded->model->linear_layers()) got[name] = lin->merged_weight();
  for (auto& [name, lin] : whole->linear_layers()) {
    ASSERT_TRUE(got.count(name)) << name;
    if (adapter)
      EXPECT_TRUE(torch::allclose(got[name], lin->weight, 0, 1e-6)) << name;
    else
      EXPECT_TRUE(torch::equal(got[name], lin->weight)) << name;
  }
  world->barrier();
  if (world->rank() == 0) fs::remove_all(root);
}

INSTANTIATE_TEST_SUITE_P(Adapter, ShardedEval, ::testing::Bool());

TEST(Nccl, AllReduceOnOneGpuPerRank) {
#ifndef LETHE_HAVE_NCCL
  GTEST_SKIP() << "built without NCCL (needs /usr/local/cuda with NCCL)";
#else
  if (!torch::cuda::is_available() || int(torch::cuda::device_count()) < world_size())
    GTEST_SKIP() << "needs a CUDA-enabled LibTorch and one GPU per rank (" << world_size() << ")";
  auto world = make_world_communicator();
  int device = world->rank() % int(torch::cuda::device_count());
  auto nccl = make_nccl_communicator(*world, device, "nccl-world");
  auto opts = torch::TensorOptions().device(torch::kCUDA, device);
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    auto t = torch::full({1000}, double(world->rank() + 1), opts.dtype(dtype));
    nccl->all_reduce(t, ReduceOp::Sum);
    EXPECT_TRUE(
        torch::allclose(t.cpu().to(torch::kFloat), torch::full({1000}, world->size() * (world->size() + 1) / 2.0)));
    auto mine = torch::full({4}, double(world->rank()), opts.dtype(dtype));
    auto all = torch::empty({4 * world->size()}, opts.dtype(dtype));
    nccl->all_gather(mine, all);
    EXPECT_EQ(all.cpu()[4 * (world->size() - 1)].item<float>(), float(world->size() - 1));
  }
  nccl->barrier();
#endif
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  lethe::RankInfo r = lethe::mpi_init(&argc, &argv);
  lethe::configure_threads(0, r);
  ::testing::InitGoogleTest(&argc, argv);
  if (r.world_rank != 0) {  // one rank reports; all ranks run and vote
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0, any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (any && r.world_rank == 0) std::cerr << "a test failed on some rank\n";
  lethe::mpi_finalize();
  return any;
}
