// The unlearning methods of docs/METHODS.md: each loss term against PyTorch (the .venv's torch)
// (tests/reference/losses_reference.py), and each objective on a case whose answer is known
// by hand (values at theta_0, label rules, MemFlex localization, SNAP's items, TVN's negation).
#include <cmath>

#include "checkpoints/safetensors.h"
#include "common/error.h"
#include "eval/evaluate.h"
#include "model/generate.h"
#include "common/fs.h"
#include "data/bpe_trainer.h"
#include "dist/process_groups.h"
#include "unlearn/losses.h"
#include "unlearn/memflex.h"
#include "unlearn/method_support.h"
#include "unlearn/trainer.h"
#include "tests/test_util.h"
#include "tests/unlearn/objective_options.h"

namespace lethe {
namespace {

// ---------------------------------------------------------------- loss terms vs PyTorch
TEST(Losses, MatchPythonReference) {
  LETHE_REQUIRE_REFERENCE("torch, safetensors");
  test::TempDir tmp;
  torch::manual_seed(5);
  const int64_t B = 3, T = 6, V = 11, C = 8;
  auto logp = -torch::rand({B}) * 20, logp_ref = -torch::rand({B}) * 20;
  auto mean_nll = torch::rand({B}) * 3;
  auto lw = -torch::rand({B}) * 30, lw_ref = -torch::rand({B}) * 30, ll = -torch::rand({B}) * 10,
       ll_ref = -torch::rand({B}) * 10;
  auto logits = torch::randn({B, T, V}) * 2, ref_logits = torch::randn({B, T, V}) * 2;
  auto kl_mask = (torch::rand({B, T}) > 0.4).to(torch::kFloat);
  kl_mask[2].zero_();  // an item with no valid position counts as zero
  auto h = torch::randn({B, T, C}), target = torch::rand({1, 1, C}) * 3;
  auto mse_mask = (torch::rand({B, T}) > 0.3).to(torch::kFloat);
  auto w = torch::randn({7, 5}), w0 = torch::randn({7, 5});
  auto dirs = random_directions(5, 4, 99);
  // Token-level terms: per-position NLL, targets (-100 where a position predicts no answer).
  auto nll = torch::rand({B, T}) * 4;
  auto tok_mask = (torch::rand({B, T}) > 0.3).to(torch::kFloat);
  auto targets = torch::randint(0, V, {B, T}, torch::kLong).masked_fill(tok_mask.eq(0), -100);
  tok_mask[1].zero_();
  write_safetensors(tmp / "in.safetensors", {{"logp", logp},
                                             {"logp_ref", logp_ref},
                                             {"mean_nll", mean_nll},
                                             {"logp_w", lw},
                                             {"logp_w_ref", lw_ref},
                                             {"logp_l", ll},
                                             {"logp_l_ref", ll_ref},
                                             {"logits", logits},
                                             {"ref_logits", ref_logits},
                                             {"kl_mask", kl_mask},
                                             {"h", h},
                                             {"target", target},
                                             {"mse_mask", mse_mask},
                                             {"w", w},
                                             {"w0", w0},
                                             {"dirs", dirs},
                                             {"nll", nll},
                                             {"tok_mask", tok_mask},
                                             {"targets", targets}});
  const double npo_beta = 0.1, simnpo_beta = 4.5, simnpo_delta = 0.3, dpo_beta = 0.1;
  const double wga_beta = 1.5, satimp_b1 = 5, satimp_b2 = 1, undial_beta = 10;
  test::spit(tmp / "p.json", json({{"wga_beta", wga_beta},
                                   {"satimp_b1", satimp_b1},
                                   {"satimp_b2", satimp_b2},
                                   {"undial_beta", undial_beta},
                                   {"npo_beta", npo_beta},
                                   {"simnpo_beta", simnpo_beta},
                                   {"simnpo_delta", simnpo_delta},
                                   {"dpo_beta", dpo_beta}})
                                 .dump());
  ASSERT_EQ(test::run_reference("losses_reference.py",
                                (tmp / "in.safetensors") + " " + (tmp / "p.json") + " " + (tmp / "ref.safetensors")),
            0);
  TensorMap ref = read_safetensors(tmp / "ref.safetensors");

  auto leaf = [](const torch::Tensor& t) { return t.clone().requires_grad_(true); };
  auto check = [&](const std::string& name, const torch::Tensor& loss,
                   std::vector<std::pair<std::string, torch::Tensor>> wrt) {
    loss.backward();
    double lerr = test::rel_error(loss.detach().reshape({1}), ref.at(name + ".loss"));
    EXPECT_LT(lerr, 1e-5) << name;
    double worst = 0;
    for (auto& [k, t] : wrt) worst = std::max(worst, test::rel_error(t.grad(), ref.at(name + ".grad." + k)));
    EXPECT_LT(worst, 1e-4) << name;
    std::cout << "[ losses ] " << name << ": loss rel err " << lerr << ", gradient rel err " << worst << "\n";
  };
  {
    auto a = leaf(logp);
    check("npo", npo_loss(a, logp_ref, npo_beta), {{"logp", a}});
  }
  {
    auto a = leaf(mean_nll);
    check("simnpo", simnpo_loss(a, simnpo_beta, simnpo_delta), {{"mean_nll", a}});
  }
  {
    auto a = leaf(lw), b = leaf(ll);
    check("dpo", dpo_loss(a, lw_ref, b, ll_ref, dpo_beta), {{"logp_w", a}, {"logp_l", b}});
  }
  {
    auto a = leaf(logits);
    check("kl", kl_loss(a, torch::log_softmax(ref_logits, -1), kl_mask), {{"logits", a}});
  }
  {
    auto a = leaf(h);
    check("rmu", masked_mse(a, target, mse_mask), {{"h", a}});
  }
  {
    auto a = leaf(w);
    check("swd", sliced_wasserstein(a, w0, dirs), {{"w", a}});
  }
  {
    auto a = leaf(nll);
    check("wga", wga_loss(a, tok_mask, wga_beta), {{"nll", a}});
  }
  {
    auto a = leaf(nll);
    check("satimp", satimp_loss(a, tok_mask, satimp_b1, satimp_b2), {{"nll", a}});
  }
  {
    // UNDIAL on every item position (kl_mask), the true token adjusted where there is one.
    auto a = leaf(logits);
    check("undial", undial_loss(a, ref_logits, targets, kl_mask, undial_beta), {{"logits", a}});
  }
  {
    auto a = leaf(logits);
    check("ce_u", ce_u_loss(a, targets, tok_mask), {{"logits", a}});
  }
  {
    auto a = leaf(logits);
    check("pdu", logit_spread_loss(a, tok_mask), {{"logits", a}});
  }
}

// ---------------------------------------------------------------- hand-computable loss values
TEST(Losses, HandComputableValues) {
  auto z = torch::zeros({4});
  // At theta = ref the NPO and DPO terms are (2/beta) ln 2.
  EXPECT_NEAR(npo_loss(z - 3, z - 3, 0.1).item<double>(), 20 * std::log(2.0), 1e-5);
  EXPECT_NEAR(dpo_loss(z - 1, z - 1, z - 2, z - 2, 0.1).item<double>(), 20 * std::log(2.0), 1e-5);
  // SimNPO at mean NLL = delta: -(2/beta) ln(1/2).
  EXPECT_NEAR(simnpo_loss(z + 0.5, 4.5, 0.5).item<double>(), 2 / 4.5 * std::log(2.0), 1e-6);
  // KL of a distribution with itself is 0; MSE of (1,1) vs (0,0) is 1 on every masked position.
  auto lg = torch::randn({2, 3, 5});
  EXPECT_NEAR(kl_loss(lg, torch::log_softmax(lg, -1), torch::ones({2, 3})).item<double>(), 0, 1e-6);
  EXPECT_NEAR(masked_mse(torch::ones({2, 3, 2}), torch::zeros({1, 1, 2}), torch::ones({2, 3})).item<double>(), 1, 1e-7);
  // SWD: shifting every row by v moves every sorted projection by v.t_k, so
  // SWD = (1/K) sum_k n (v.t_k)^2; and the SWD of a matrix with itself is 0.
  auto w0 = torch::randn({6, 3});
  auto v = torch::tensor({0.5f, -1.0f, 2.0f});
  auto dirs = random_directions(3, 5, 7);
  double expect = (torch::matmul(v, dirs).pow(2) * 6).mean().item<double>();
  EXPECT_NEAR(sliced_wasserstein(w0 + v, w0, dirs).item<double>(), expect, 1e-4);
  EXPECT_NEAR(sliced_wasserstein(w0, w0, dirs).item<double>(), 0, 1e-7);
  // Directions are unit length and reproducible.
  EXPECT_NEAR(dirs.norm(2, 0).sub(1).abs().max().item<double>(), 0, 1e-6);
  EXPECT_TRUE(torch::equal(dirs, random_directions(3, 5, 7)));
  EXPECT_FALSE(torch::equal(dirs, random_directions(3, 5, 8)));
}

TEST(Losses, OpenUnlearningTermsOnHandComputableCases) {
  const int64_t V = 4;
  auto mask = torch::ones({1, 2});
  // WGA at beta 0 is gradient ascent: -mean NLL; SatImp's weight vanishes at p = 1 and p = 0.
  auto nll = torch::tensor({{0.5f, 1.5f}});
  EXPECT_NEAR(wga_loss(nll, mask, 0).item<double>(), -1.0, 1e-6);
  EXPECT_NEAR(wga_loss(nll, mask, 1).item<double>(), -(std::exp(-0.5) * 0.5 + std::exp(-1.5) * 1.5) / 2, 1e-6);
  EXPECT_NEAR(satimp_loss(torch::zeros({1, 2}), mask, 5, 1).item<double>(), 0, 1e-7);
  const double p = std::exp(-1.0);
  EXPECT_NEAR(satimp_loss(torch::ones({1, 2}), mask, 2, 3).item<double>(), -p * p * std::pow(1 - p, 3), 1e-6);
  // The weights carry no gradient: d/d nll of -w nll is -w.
  auto a = nll.clone().requires_grad_(true);
  wga_loss(a, mask, 1).backward();
  EXPECT_NEAR(a.grad()[0][0].item<double>(), -std::exp(-0.5) / 2, 1e-6);
  // UNDIAL at beta 0 on the reference's own logits: the gradient softmax(z) - q is 0 and the loss
  // is the entropy; with a large beta the target moves all mass off the true token.
  auto z = torch::randn({1, 2, V});
  auto targets = torch::tensor({{2, -100}}, torch::kLong);
  auto zl = z.clone().requires_grad_(true);
  auto ent = -(torch::softmax(z, -1) * torch::log_softmax(z, -1)).sum(-1).mean();
  auto l0 = undial_loss(zl, z, targets, mask, 0);
  EXPECT_NEAR(l0.item<double>(), ent.item<double>(), 1e-5);
  l0.backward();
  EXPECT_LT(zl.grad().abs().max().item<double>(), 1e-6);
  auto zb = z.clone().requires_grad_(true);
  undial_loss(zb, z, targets, mask, 1e4).backward();
  EXPECT_NEAR(zb.grad()[0][0][2].item<double>(), torch::softmax(z[0][0], -1)[2].item<double>() / 2, 1e-5);
  // CE-U on equal logits: q is uniform over the V - 1 other tokens, CE = log V; the gradient
  // lowers the true token's logit by p_y.
  auto flat = torch::zeros({1, 2, V}).requires_grad_(true);
  auto both = torch::tensor({{1, 3}}, torch::kLong);
  auto ceu = ce_u_loss(flat, both, mask);
  EXPECT_NEAR(ceu.item<double>(), std::log(double(V)), 1e-6);
  ceu.backward();
  EXPECT_NEAR(flat.grad()[0][0][1].item<double>(), 0.25 / 2, 1e-6);
  EXPECT_NEAR(flat.grad()[0][0][0].item<double>(), (0.25 - 1.0 / 3) / 2, 1e-6);
  // PDU's spread: 0 on flat logits, (c - c/V)^2 on one raised logit.
  EXPECT_NEAR(logit_spread_loss(torch::zeros({1, 2, V}), mask).item<double>(), 0, 1e-7);
  auto raised = torch::zeros({1, 2, V});
  raised.select(2, 0).fill_(2);
  EXPECT_NEAR(logit_spread_loss(raised, mask).item<double>(), std::pow(2 - 2.0 / V, 2), 1e-6);
  // Shifted targets and masks: position t predicts token t + 1.
  auto labels = torch::tensor({{-100, -100, 7, 8}}, torch::kLong);
  EXPECT_TRUE(torch::equal(next_token_targets(labels), torch::tensor({{-100, 7, 8, -100}}, torch::kLong)));
  EXPECT_TRUE(torch::equal(next_token_mask(torch::tensor({{1, 1, 1, 0}})), torch::tensor({{1.f, 1.f, 0.f, 0.f}})));
}

TEST(Methods, PduDualVariableFollowsTheRetainLoss) {
  const ObjectiveSpec& spec = find_objective("pdu");
  auto pdu = spec.make(test::objective_options(
      spec, {"--pdu.epsilon", "0.5", "--pdu.dual-step", "2", "--pdu.warmup-steps", "1", "--pdu.retain-weight", "1"}));
  auto lambda = [&](const Objective& o) { return o.state().at("lambda").get<double>(); };
  pdu->end_step(1, {{"retain_nll", 0.9}});  // warm-up: no move
  EXPECT_DOUBLE_EQ(lambda(*pdu), 1.0);
  pdu->end_step(2, {{"retain_nll", 0.9}});  // constraint violated by 0.4: lambda += 2 * 0.4
  EXPECT_NEAR(lambda(*pdu), 1.8, 1e-12);
  pdu->end_step(3, {{"retain_nll", 0.1}});  // satisfied: lambda -= 0.8
  EXPECT_NEAR(lambda(*pdu), 1.0, 1e-12);
  pdu->end_step(4, {{"retain_nll", 0.0}});  // never below 0
  EXPECT_DOUBLE_EQ(lambda(*pdu), 0.0);
  // The state goes into checkpoints and comes back on resume.
  auto resumed = spec.make(test::objective_options(spec, {"--pdu.epsilon", "0.5"}));
  pdu->end_step(5, {{"retain_nll", 1.5}});
  resumed->restore(pdu->state());
  EXPECT_EQ(resumed->state(), pdu->state());
  EXPECT_THROW(spec.make(test::objective_options(spec, {"--pdu.dual-step", "-1"})), InputError);
}

// ---------------------------------------------------------------- objectives on a tiny model
struct World {
  Tokenizer tok;
  CausalLM model{nullptr};
  std::vector<Example> forget_ex = {{"Where does Ann live?", "Ann lives at 12 Elm Road", {{"entity", "Ann"}}},
                                    {"What is the email of Ann?", "ann@mail.org", {{"entity", "Ann"}}},
                                    {"Who is Bo's father?", "Cal Dunn", {{"entity", "Bo"}}}};
  std::vector<Example> retain_ex = {{"What does Ann write?", "poems", {{"entity", "Ann"}}},
                                    {"Where was Bo born?", "in Oslo", {{"entity", "Bo"}}},
                                    {"Who is Eve?", "a painter", {{"entity", "Eve"}}}};
  std::vector<TokenizedItem> forget, retain;
  std::unique_ptr<Communicator> comm = make_self_communicator();
  ObjectiveContext ctx;
  World() {
    std::vector<std::string> corpus;
    for (auto* set : {&forget_ex, &retain_ex})
      for (auto& e : *set) corpus.push_back(e.prompt + " " + e.response);
    tok = Tokenizer::from_json(train_bpe_tokenizer(corpus, BpeTrainOptions{400}), "t");
    json j = {{"model_type", "llama"},   {"vocab_size", tok.vocab_size()}, {"hidden_size", 16},
              {"intermediate_size", 32}, {"num_hidden_layers", 2},         {"num_attention_heads", 2}};
    model = CausalLM(ModelConfig::from_json(j, "cfg"));
    model->init_weights(3);
    forget = tokenize_items(tok, ChatTemplate::ChatML, forget_ex, 64);
    retain = tokenize_items(tok, ChatTemplate::ChatML, retain_ex, 64);
    ctx.forget = &forget;
    ctx.retain = &retain;
    ctx.forget_examples = &forget_ex;
    ctx.retain_examples = &retain_ex;
    ctx.forget_used = {0, 1, 2};
    ctx.retain_used = {0, 1, 2};
    ctx.tok = &tok;
    ctx.seed = 9;
    ctx.comm = comm.get();
  }
  std::unique_ptr<Objective> make(const std::string& method, std::vector<std::string> args = {}) {
    const auto& spec = find_objective(method);
    auto obj = spec.make(test::objective_options(spec, std::move(args)));
    obj->choose_trained(model);
    obj->prepare(model, ctx);
    return obj;
  }
  Batch fb(std::vector<int64_t> idx = {0, 1, 2}) { return collate(forget, idx, 0); }
  Batch rb(std::vector<int64_t> idx = {0, 1, 2}) { return collate(retain, idx, 0); }
  double nll(const Batch& b) {
    torch::NoGradGuard ng;
    return mean_item_nll(model, b).item<double>();
  }
};

TEST(Methods, EveryMethodIsRegistered) {
  for (std::string m : {"ga", "gd", "kl", "random_label", "adversarial", "npo", "simnpo", "dpo", "idk", "rmu", "tvn",
                        "memflex", "snap", "undial", "wga", "satimp", "ce_u", "pdu", "altpo"})
    EXPECT_NO_THROW(find_objective(m)) << m;
}

TEST(Methods, ReferenceTermsAtThetaZero) {
  // At theta_0 the cached reference equals the model: NPO and DPO give (2/beta) ln 2, KL and
  // RMU's retain term 0; gradients of KL vanish there.
  World w;
  const double ln2x20 = 20 * std::log(2.0);
  {
    auto obj = w.make("npo", {"--npo.retain-weight", "0"});
    EXPECT_FALSE(obj->uses_retain());
    EXPECT_NEAR(obj->compute(w.model, w.fb(), nullptr).loss.item<double>(), ln2x20, 1e-4);
    // Batch order and composition do not matter: items find their own cached values.
    EXPECT_NEAR(obj->compute(w.model, w.fb({2, 0}), nullptr).loss.item<double>(), ln2x20, 1e-4);
  }
  {
    auto obj = w.make("dpo", {"--dpo.retain-weight", "0"});
    EXPECT_NEAR(obj->compute(w.model, w.fb({1, 2}), nullptr).loss.item<double>(), ln2x20, 1e-4);
  }
  {
    auto obj = w.make("kl", {"--kl.forget-weight", "0"});
    for (std::string mask : {"answer", "item", "all"}) {
      auto o = w.make("kl", {"--kl.forget-weight", "0", "--kl.mask", mask});
      Batch r = w.rb({2, 0});
      auto out = o->compute(w.model, w.fb(), &r);
      EXPECT_NEAR(out.parts["retain_kl"], 0, 1e-6) << mask;
    }
    EXPECT_THROW(w.make("kl", {"--kl.mask", "everything"}), InputError);
  }
  {
    auto obj = w.make("rmu", {"--rmu.layer", "1", "--rmu.train", R"(model\.layers\.1\.mlp\.down_proj\.weight)"});
    Batch f = w.fb(), r = w.rb();
    auto out = obj->compute(w.model, f, &r);
    EXPECT_NEAR(out.parts["retain_mse"], 0, 1e-10);
    EXPECT_GT(out.parts["forget_mse"], 1.0);  // hidden states are far from c*u (|c u| = 6.5)
    int trainable = 0;
    for (auto& p : w.model->parameters()) trainable += p.requires_grad() ? 1 : 0;
    EXPECT_EQ(trainable, 1);
    EXPECT_THROW(w.make("rmu"), InputError);  // layer 7 of a 2-layer model
    EXPECT_THROW(w.make("rmu", {"--rmu.layer", "0", "--rmu.train", "nothing"}), InputError);
  }
}

TEST(Methods, AltPoPrefersTheModelsOwnAlternativeAnswer) {
  World w;
  auto obj = w.make("altpo", {"--altpo.retain-weight", "0", "--altpo.max-new-tokens", "6", "--altpo.prompt",
                              "Say something else. {question}"});
  json alts = obj->describe()["alternatives"];
  ASSERT_EQ(alts.size(), 3u);
  // Each alternative is the model's greedy answer at theta_0 to the question as the prompt puts it.
  auto stops = stop_token_ids(w.model, w.tok, ChatTemplate::ChatML);
  for (int i = 0; i < 3; ++i) {
    auto it = tokenize_items(w.tok, ChatTemplate::ChatML,
                             {{"Say something else. " + w.forget_ex[size_t(i)].prompt, "", {}}}, 256)[0];
    std::vector<int64_t> prompt(it.ids.begin(), it.ids.begin() + it.prompt_len);
    std::string text = w.tok.decode(greedy_generate(w.model, prompt, 6, stops), true);
    const size_t a = text.find_first_not_of(" \t\r\n"), b = text.find_last_not_of(" \t\r\n");
    text = a == std::string::npos ? "I don't know." : text.substr(a, b - a + 1);
    EXPECT_EQ(alts[std::to_string(i)].get<std::string>(), text) << i;
  }
  // At theta_0 the cached reference equals the model: DPO's (2/beta) ln 2.
  EXPECT_NEAR(obj->compute(w.model, w.fb({2, 1}), nullptr).loss.item<double>(), 20 * std::log(2.0), 1e-4);
  EXPECT_THROW(w.make("altpo", {"--altpo.prompt", "no placeholder"}), InputError);
}

TEST(Methods, SimNpoAndGaOnTheSameForwardPass) {
  World w;
  auto obj = w.make("simnpo", {"--simnpo.retain-weight", "0", "--simnpo.forget-weight", "1", "--simnpo.beta", "2"});
  Batch f = w.fb();
  torch::Tensor per_item;
  {
    torch::NoGradGuard ng;
    per_item = item_mean_nll(token_loss(w.model->forward(f.input_ids, f.attention_mask), f.labels));
  }
  double expect = 0;
  for (int64_t i = 0; i < 3; ++i)
    expect += -(2.0 / 2.0) * std::log(1 / (1 + std::exp(-2 * per_item[i].item<double>())));
  EXPECT_NEAR(obj->compute(w.model, f, nullptr).loss.item<double>(), expect / 3, 1e-5);
}

TEST(Methods, RandomAndAdversarialLabels) {
  World w;
  Batch f = w.fb();
  // Adversarial targets: never the true token, always ref's best other token.
  torch::Tensor logits;
  {
    torch::NoGradGuard ng;
    logits = w.model->forward(f.input_ids, f.attention_mask);
  }
  auto adv = adversarial_labels(logits, f.labels);
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t t = 1; t < f.labels.size(1); ++t) {
      int64_t truth = f.labels[b][t].item<int64_t>();
      if (truth == -100) {
        EXPECT_EQ(adv[b][t].item<int64_t>(), -100);
        continue;
      }
      auto row = logits[b][t - 1].clone();
      int64_t a = adv[b][t].item<int64_t>();
      EXPECT_NE(a, truth);
      row[truth] = -1e30;
      EXPECT_EQ(a, row.argmax().item<int64_t>());
    }
  auto obj = w.make("adversarial");
  double expect = w.nll(with_labels(f, adv));
  EXPECT_NEAR(obj->compute(w.model, f, nullptr).loss.item<double>(), expect, 1e-5);
  // Random labels depend on the item only: the same item in another batch gets the same loss.
  auto rl = w.make("random_label");
  double both = rl->compute(w.model, w.fb({0, 2}), nullptr).loss.item<double>();
  double a0 = rl->compute(w.model, w.fb({0}), nullptr).loss.item<double>();
  double a2 = rl->compute(w.model, w.fb({2}), nullptr).loss.item<double>();
  EXPECT_NEAR(both, (a0 + a2) / 2, 1e-5);
  EXPECT_GT(std::abs(a0 - w.nll(w.fb({0}))), 1e-3);  // other targets than the answer
}

TEST(Methods, IdkAndSnapBuildTheirItems) {
  test::TempDir tmp;
  test::spit(tmp / "refusals.txt", "No idea.\n\nCannot say.\n");
  {
    World w;
    auto obj = w.make("idk", {"--idk.refusals", tmp / "refusals.txt"});
    ASSERT_EQ(w.forget.size(), 3u);
    for (auto& it : w.forget) {
      std::string answer = w.tok.decode(std::vector<int64_t>(it.ids.begin() + it.prompt_len, it.ids.end()), true);
      EXPECT_TRUE(answer.find("No idea.") != std::string::npos || answer.find("Cannot say.") != std::string::npos)
          << answer;
    }
    EXPECT_THROW(w.make("idk", {"--idk.refusals", tmp / "missing.txt"}), InputError);
  }
  {
    World w;
    auto obj = w.make("snap", {"--snap.refusals", tmp / "refusals.txt", "--snap.entity-questions", "2"});
    // 3 forget questions + 2 entities (Ann, Bo) x 2 templates; hard positives about Ann and Bo.
    EXPECT_EQ(w.forget.size(), 7u);
    EXPECT_EQ(w.retain.size(), 2u);
    obj->begin_step(1);
    Batch f = w.fb({0, 6}), r = w.rb({0, 1});
    auto out = obj->compute(w.model, f, &r);
    EXPECT_NEAR(out.parts["swd"], 0, 1e-10);  // theta = theta_0
    EXPECT_NEAR(out.loss.item<double>(), w.nll(f) + w.nll(r), 1e-5);
  }
}

TEST(Methods, SnapRegulariserGrowsWithDrift) {
  World w;
  auto obj = w.make("snap", {"--snap.lambda", "1", "--snap.projections", "8"});
  obj->begin_step(1);
  {
    torch::NoGradGuard ng;
    for (auto& p : w.model->parameters()) p.add_(0.05);
  }
  Batch f = w.fb({0}), r = w.rb({0});
  auto out = obj->compute(w.model, f, &r);
  EXPECT_GT(out.parts["swd"], 1e-4);
  EXPECT_NEAR(out.loss.item<double>(), out.parts["refusal_nll"] + out.parts["positive_nll"] + out.parts["swd"], 1e-4);
}

TEST(Methods, TaskVectorNegationMirrorsTheFinetunedWeights) {
  World w;
  std::map<std::string, torch::Tensor> before;
  for (auto& [n, p] : w.model->named_weights()) before[n] = p.detach().clone();
  auto obj = w.make("tvn", {"--tvn.lambda", "0.5"});
  std::map<std::string, torch::Tensor> tuned;
  {
    torch::NoGradGuard ng;
    for (auto& [n, p] : w.model->named_weights()) {
      p.add_(torch::randn_like(p) * 0.1);
      tuned[n] = p.detach().clone();
    }
  }
  obj->finish(w.model);
  for (auto& [n, p] : w.model->named_weights())
    EXPECT_LT(test::rel_error(p, before[n] - 0.5 * (tuned[n] - before[n])), 1e-6) << n;
}

// With LoRA the task vector is the adapters' delta: merged after finish_adapters(), each weight
// is theta_0 - lambda (theta_ft - theta_0), theta_ft being the finetuned adapters merged.
TEST(Methods, TaskVectorNegationWithLoraNegatesTheAdapters) {
  World w;
  std::map<std::string, torch::Tensor> before;
  for (auto& [n, p] : w.model->named_weights()) before[n] = p.detach().clone();
  LoraOptions lo;
  lo.rank = 2;
  lo.alpha = 4;
  w.model->add_lora(lo);
  auto obj = w.make("tvn", {"--tvn.lambda", "0.5"});
  {
    torch::NoGradGuard ng;
    for (auto& [n, p] : w.model->named_weights())
      if (is_lora_parameter(n)) p.add_(torch::randn_like(p) * 0.3);  // the finetuned adapters
  }
  std::map<std::string, torch::Tensor> tuned;
  for (auto& [name, lin] : w.model->linear_layers())
    if (lin->has_lora()) tuned[name + ".weight"] = lin->merged_weight().clone();
  ASSERT_FALSE(tuned.empty());
  obj->finish_adapters(w.model);
  w.model->merge_lora();
  obj->finish(w.model);
  for (auto& [n, p] : w.model->named_weights()) {
    auto want = tuned.count(n) ? before[n] - 0.5 * (tuned[n] - before[n]) : before[n];
    EXPECT_LT(test::rel_error(p, want), 1e-5) << n;
    if (tuned.count(n)) {
      EXPECT_GT(test::rel_error(tuned[n], before[n]), 1e-3) << n;  // the adapters moved it
    }
  }
}

TEST(Methods, MemflexLocalizationOnAConstructedCase) {
  // a: forget and retain gradients orthogonal and large -> located; b: parallel -> kept out;
  // c: orthogonal but tiny -> kept out; d: opposite and large -> located.
  NamedGrads gf = {{"a", torch::tensor({1.0, 0.0})},
                   {"b", torch::tensor({1.0, 1.0})},
                   {"c", torch::tensor({1e-5, 0.0})},
                   {"d", torch::tensor({0.0, -2.0})}};
  NamedGrads gr = {{"a", torch::tensor({0.0, 3.0})},
                   {"b", torch::tensor({2.0, 2.0})},
                   {"c", torch::tensor({0.0, 1.0})},
                   {"d", torch::tensor({0.0, 1.0})}};
  auto out = memflex_localize(gf, gr, 0.92, 6e-4);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_TRUE(out[0].selected);
  EXPECT_NEAR(out[0].cos, 0, 1e-12);
  EXPECT_NEAR(out[0].mag, 0.5, 1e-12);
  EXPECT_FALSE(out[1].selected);
  EXPECT_NEAR(out[1].cos, 1, 1e-12);
  EXPECT_FALSE(out[2].selected);
  EXPECT_TRUE(out[3].selected);
  EXPECT_NEAR(out[3].cos, -1, 1e-12);
}

TEST(Methods, MemflexGradientPassAndReuse) {
  test::TempDir tmp;
  World w;
  EXPECT_THROW(w.make("memflex"), InputError);  // no LoRA adapters
  LoraOptions lo;
  lo.rank = 8;
  lo.seed = 1;
  w.model->add_lora(lo);
  {  // non-zero B so that both A and B receive gradient information
    torch::NoGradGuard ng;
    for (auto& [n, p] : w.model->named_parameters(true).pairs())
      if (n.find("lora_B") != std::string::npos) p.normal_(0, 0.1);
  }
  const int64_t vocab = w.tok.vocab_size();
  auto g1 = memflex_gradient_information(w.model, w.forget, 0, 3, 9, kMemflexForgetLabels, vocab, 0, w.comm.get());
  auto g2 = memflex_gradient_information(w.model, w.forget, 0, 3, 9, kMemflexForgetLabels, vocab, 0, w.comm.get());
  ASSERT_EQ(g1.size(), 2u * 7u * 2u);  // 2 layers x 7 projections x (A, B)
  for (size_t k = 0; k < g1.size(); ++k) {
    EXPECT_TRUE(torch::equal(g1[k].second, g2[k].second));  // seeded random labels: reproducible
    EXPECT_GT(g1[k].second.abs().sum().item<double>(), 0) << g1[k].first;
  }
  std::string loc = tmp / "loc.json";
  auto obj = w.make("memflex", {"--memflex.localization", loc, "--memflex.mu", "1.5", "--memflex.sigma", "0"});
  json j = read_json_file(loc);
  EXPECT_EQ(j["selected"].size(), g1.size());  // mu > 1 and sigma 0 select every matrix with a gradient
  // Reuse: a localization file that selects one matrix freezes every other adapter.
  write_json_file(loc, json{{"selected", {"model.layers.0.self_attn.q_proj.lora_B.weight"}}});
  auto obj2 = w.make("memflex", {"--memflex.localization", loc});
  int trainable = 0;
  for (auto& p : w.model->parameters()) trainable += p.requires_grad() ? 1 : 0;
  EXPECT_EQ(trainable, 1);
  write_json_file(loc, json{{"selected", {"model.layers.0.nope.lora_B.weight"}}});
  EXPECT_THROW(w.make("memflex", {"--memflex.localization", loc}), InputError);
  EXPECT_THROW(w.make("memflex", {"--memflex.mu", "-2"}), InputError);  // nothing located: a clear error
}

TEST(Methods, ItemsDrawnCoversTheLoop) {
  std::vector<TokenizedItem> items(10, TokenizedItem{{1, 2, 3}, 1});
  auto two = items_drawn(items, 4, 3, 2);  // 8 of 10 items
  EXPECT_EQ(two.size(), 8u);
  EXPECT_EQ(items_drawn(items, 4, 3, 3).size(), 10u);
  BatchIterator it(&items, 4, 3, 0);
  std::set<int64_t> seen;
  for (int b = 0; b < 2; ++b)
    for (auto i : it.next_indices()) seen.insert(i);
  EXPECT_EQ(std::vector<int64_t>(seen.begin(), seen.end()), two);
}

}  // namespace
}  // namespace lethe
