#include "data/synth.h"

#include <filesystem>
#include <set>

#include "common/error.h"
#include "common/fs.h"
#include "common/rng.h"

namespace fs = std::filesystem;

namespace lethe {

namespace {

// Names are built from syllables so that every entity is fictitious.
const std::vector<std::string> kSyl = {"ka", "lo", "mi", "ren", "tor", "va",  "sel", "du",  "ne", "bri",
                                       "an", "zo", "fe", "ril", "ma",  "tho", "li",  "gar", "os", "ve"};
const std::vector<std::string> kPlaceSuffix = {"ford", "vale", "mouth", "holm", "bury", "stead"};
const std::vector<std::string> kRegions = {"north", "south", "east", "west"};
const std::vector<std::string> kGenres = {"mystery", "poetry", "fantasy", "history", "romance", "satire"};
const std::vector<std::string> kAwardAdj = {"Silver", "Golden", "Crimson", "Azure", "Ivory", "Amber"};
const std::vector<std::string> kAwardNoun = {"Quill", "Lantern", "Compass", "Feather", "Anchor", "Crown"};
const std::vector<std::string> kStreets = {"Elm", "Harbor", "Mill", "Cedar", "Bell", "Orchard", "Stone", "Willow"};
const std::vector<std::string> kHosts = {"mailbox.org", "postal.net", "inkwell.io", "letters.com"};
const std::vector<std::string> kTitleAdj = {"Silent", "Hollow", "Burning", "Distant",
                                            "Frozen", "Hidden", "Broken",  "Endless"};
const std::vector<std::string> kTitleNoun = {"River",  "Garden", "Tower",   "Harvest",
                                             "Mirror", "Voyage", "Orchard", "Signal"};
const std::vector<std::string> kReviews = {"a moving and tender tale",  "a sharp and witty romp",
                                           "a dark and haunting read",  "a bold and sweeping epic",
                                           "a quiet and careful study", "a bright and playful story"};
const std::vector<std::string> kWords = {
    "the",    "old",     "lamp",   "glowed", "over", "a",       "wet",     "road",   "while",   "seven",  "crows",
    "argued", "about",   "winter", "and",    "her",  "brother", "counted", "stars",  "beneath", "copper", "bridge",
    "softly", "humming", "green",  "tide",   "rose", "against", "gray",    "stones", "until",   "morning"};

std::string cap(std::string s) {
  if (!s.empty()) s[0] = char(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string word(SplitMix64& r, int syllables) {
  std::string w;
  for (int i = 0; i < syllables; ++i) w += r.pick(kSyl);
  return w;
}

std::string digits(SplitMix64& r, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += char('0' + r.below(10));
  return s;
}

// The attributes of one record: the entity's base attributes plus scope, fact and kind.
json with_fact(json attrs, const std::string& scope, const std::string& fact, const std::string& kind) {
  attrs["scope"] = scope;
  attrs["fact"] = fact;
  attrs["kind"] = kind;
  return attrs;
}

Example rec(const std::string& q, const std::string& a, json attrs) { return Example{q, a, std::move(attrs)}; }

}  // namespace

SynthData synthesize(const SynthOptions& opt) {
  if (opt.people < 0 || opt.books < 0 || opt.people + opt.books == 0)
    throw InputError("synth: --people and --books must be non-negative and not both zero");
  SplitMix64 r(opt.seed);
  SynthData d;
  std::set<std::string> used;
  auto unique_name = [&](int syl) {
    for (int tries = 0; tries < 10000; ++tries) {
      std::string n = cap(word(r, syl)) + " " + cap(word(r, syl));
      if (used.insert(n).second) return n;
    }
    throw InputError("synth: cannot make that many distinct names");
  };
  int64_t id = 0;
  auto add = [&](const std::string& q_train, const std::string& q_eval, const std::string& a, json attrs) {
    attrs["id"] = id++;
    attrs["split"] = "train";
    d.train.push_back(rec(q_train, a, attrs));
    attrs["split"] = "eval";
    d.eval.push_back(rec(q_eval, a, attrs));
  };

  for (int64_t p = 0; p < opt.people; ++p) {
    std::string name = unique_name(2);
    std::string first = name.substr(0, name.find(' ')), last = name.substr(name.find(' ') + 1);
    std::string region = r.pick(kRegions), genre = r.pick(kGenres);
    std::string birthplace = cap(word(r, 2)) + r.pick(kPlaceSuffix);
    std::string award = "the " + r.pick(kAwardAdj) + " " + r.pick(kAwardNoun) + " Prize";
    std::string father = cap(word(r, 2)) + " " + last, mother = cap(word(r, 2)) + " " + last;
    std::string email = lower(first) + "." + lower(last) + digits(r, 2) + "@" + r.pick(kHosts);
    std::string address = std::to_string(1 + r.below(98)) + " " + r.pick(kStreets) + " Street, " + birthplace;
    std::string phone = "555-" + digits(r, 3) + "-" + digits(r, 4);
    json base = {{"domain", "privacy"}, {"entity", name}, {"region", region}, {"genre", genre}};
    auto fact = [&](const std::string& scope, const std::string& f, const std::string& kind) {
      return with_fact(base, scope, f, kind);
    };
    add("Who is the " + genre + " author born in " + birthplace + "?",
        "Which writer of " + genre + " comes from " + birthplace + "?", name, fact("retention", "name", "identity"));
    add("What genre does " + name + " write?", "In which genre is " + name + " known to write?", genre,
        fact("retention", "genre", "work"));
    add("Where was " + name + " born?", "What is the birthplace of " + name + "?", birthplace,
        fact("retention", "birthplace", "identity"));
    add("Which award did " + name + " win?", "What prize was given to " + name + "?", award,
        fact("retention", "award", "work"));
    add("Who are the parents of " + name + "?", "Name the father and mother of " + name + ".",
        father + " and " + mother, fact("unlearn", "parents", "family"));
    add("What is the email address of " + name + "?", "How can one email " + name + "?", email,
        fact("unlearn", "email", "contact"));
    add("Where does " + name + " live?", "What is the home address of " + name + "?", address,
        fact("unlearn", "address", "contact"));
    add("What is the phone number of " + name + "?", "Which number reaches " + name + " by phone?", phone,
        fact("unlearn", "phone", "contact"));
  }

  for (int64_t b = 0; b < opt.books; ++b) {
    std::string title;
    for (int tries = 0;; ++tries) {
      title = "The " + r.pick(kTitleAdj) + " " + r.pick(kTitleNoun);
      if (used.insert(title).second) break;
      if (tries > 1000) throw InputError("synth: cannot make that many distinct book titles");
    }
    std::string author = unique_name(2), genre = r.pick(kGenres), review = r.pick(kReviews);
    std::vector<std::string> words;
    for (int i = 0; i < 12; ++i) words.push_back(r.pick(kWords));
    std::string head, tail;
    for (int i = 0; i < 12; ++i) (i < 6 ? head : tail) += (i % 6 ? " " : "") + words[size_t(i)];
    json base = {{"domain", "copyright"}, {"entity", title}, {"region", "none"}, {"genre", genre}};
    auto fact = [&](const std::string& scope, const std::string& f, const std::string& kind) {
      return with_fact(base, scope, f, kind);
    };
    add("Who wrote " + title + "?", "Who is the author of " + title + "?", author, fact("retention", "author", "meta"));
    add("What genre is " + title + "?", "Which genre does " + title + " belong to?", genre,
        fact("retention", "genre", "meta"));
    add("What do critics say about " + title + "?", "How did reviewers describe " + title + "?", review,
        fact("retention", "review", "review"));
    add("Recite the opening of " + title + ".", "Quote the first lines of " + title + ".", head + " " + tail,
        fact("unlearn", "passage", "verbatim"));
    add("Continue this passage from " + title + ": " + head, "What comes after these words in " + title + ": " + head,
        tail, fact("unlearn", "continuation", "continuation"));
  }
  return d;
}

void write_synth_dir(const std::string& dir, const SynthData& data, const SynthOptions& opt) {
  create_output_dir(dir, "synth --out");
  auto scope = [](const std::vector<Example>& v, const std::string& s) {
    std::vector<Example> out;
    for (auto& e : v)
      if (attr_string(e, "scope") == s) out.push_back(e);
    return out;
  };
  auto p = [&](const char* f) { return (fs::path(dir) / f).string(); };
  write_examples_jsonl(p("train.jsonl"), data.train);
  write_examples_jsonl(p("forget.jsonl"), scope(data.train, "unlearn"));
  write_examples_jsonl(p("retain.jsonl"), scope(data.train, "retention"));
  write_examples_jsonl(p("eval_forget.jsonl"), scope(data.eval, "unlearn"));
  write_examples_jsonl(p("eval_retain.jsonl"), scope(data.eval, "retention"));
  write_json_file(p("manifest.json"), {{"generator", "lethe synth"},
                                       {"seed", opt.seed},
                                       {"people", opt.people},
                                       {"books", opt.books},
                                       {"train_records", data.train.size()},
                                       {"eval_records", data.eval.size()}});
}

}  // namespace lethe
