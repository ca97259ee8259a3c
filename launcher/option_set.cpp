#include "launcher/option_set.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "data/unicode.h"

namespace lethe {

namespace {

template <typename T>
po::typed_value<T>* value_with_default(T* field) {
  return po::value<T>()->default_value(*field);
}
template <>
po::typed_value<bool>* value_with_default(bool* field) {
  return po::bool_switch()->default_value(*field);
}
template <>
po::typed_value<std::vector<std::string>>* value_with_default(std::vector<std::string>* field) {
  return po::value<std::vector<std::string>>()->multitoken();
}

template <typename T>
bool is_missing(const T&) {
  return false;
}
template <>
bool is_missing(const std::string& v) {
  return v.empty();
}
template <>
bool is_missing(const std::vector<std::string>& v) {
  return v.empty();
}

// Text options end up in JSON (the effective configuration, run configs): they must be UTF-8.
template <typename T>
bool is_text_valid(const T&) {
  return true;
}
template <>
bool is_text_valid(const std::string& v) {
  return utf8_valid(v);
}
template <>
bool is_text_valid(const std::vector<std::string>& v) {
  return std::all_of(v.begin(), v.end(), [](const std::string& s) { return utf8_valid(s); });
}

}  // namespace

OptionSet& OptionSet::group(const std::string& name, const std::string& title) {
  group_ = name;
  title_ = title;
  return *this;
}

template <typename T>
OptionSet& OptionSet::add(const std::string& name, T* field, const std::string& help, Check<T> check, bool required) {
  Entry e;
  e.group = group_;
  e.title = title_;
  e.declare = [=](po::options_description& d) {
    d.add_options()(name.c_str(), value_with_default(field), help.c_str());
  };
  e.read = [=](const po::variables_map& vm, std::vector<std::string>& errors) {
    if (vm.count(name)) *field = vm[name].as<T>();
    if (!is_text_valid(*field)) {
      errors.push_back("--" + name + " is not valid UTF-8 text");
      return;
    }
    if (required && (!vm.count(name) || is_missing(*field))) {
      errors.push_back("missing required option --" + name);
      return;
    }
    if (check && vm.count(name)) {
      std::string why = check(*field);
      if (!why.empty()) errors.push_back("--" + name + " " + why);
    }
  };
  e.to_json = [=](json& j) { j[name] = *field; };
  entries_.push_back(std::move(e));
  return *this;
}

template OptionSet& OptionSet::add(const std::string&, int*, const std::string&, Check<int>, bool);
template OptionSet& OptionSet::add(const std::string&, int64_t*, const std::string&, Check<int64_t>, bool);
template OptionSet& OptionSet::add(const std::string&, uint64_t*, const std::string&, Check<uint64_t>, bool);
template OptionSet& OptionSet::add(const std::string&, double*, const std::string&, Check<double>, bool);
template OptionSet& OptionSet::add(const std::string&, std::string*, const std::string&, Check<std::string>, bool);
template OptionSet& OptionSet::add(const std::string&, bool*, const std::string&, Check<bool>, bool);
template OptionSet& OptionSet::add(const std::string&, std::vector<std::string>*, const std::string&,
                                   Check<std::vector<std::string>>, bool);

OptionSet& OptionSet::rule(std::function<std::string()> check) {
  Entry e;
  e.group = group_;
  e.read = [check](const po::variables_map&, std::vector<std::string>& errors) {
    std::string why = check();
    if (!why.empty()) errors.push_back(why);
  };
  entries_.push_back(std::move(e));
  return *this;
}

OptionSet& OptionSet::then(std::function<void(const po::variables_map&, std::vector<std::string>&)> fn) {
  Entry e;
  e.group = group_;
  e.read = std::move(fn);
  entries_.push_back(std::move(e));
  return *this;
}

OptionSet& OptionSet::report(std::function<void(json&)> fn) {
  Entry e;
  e.group = group_;
  e.to_json = std::move(fn);
  entries_.push_back(std::move(e));
  return *this;
}

void OptionSet::declare(po::options_description& d) const {
  // One section per title, in the order the titles first appear.
  std::vector<std::string> titles;
  for (auto& e : entries_)
    if (e.declare && std::find(titles.begin(), titles.end(), e.title) == titles.end()) titles.push_back(e.title);
  for (auto& t : titles) {
    po::options_description section(t);
    for (auto& e : entries_)
      if (e.declare && e.title == t) e.declare(section);
    d.add(section);
  }
}

void OptionSet::read(const po::variables_map& vm, std::vector<std::string>& errors) const {
  for (auto& e : entries_)
    if (e.read) e.read(vm, errors);
}

json OptionSet::to_json() const {
  json j = json::object();
  for (auto& e : entries_) {
    if (!e.to_json || e.group.empty()) continue;
    if (!j.contains(e.group)) j[e.group] = json::object();
    e.to_json(j[e.group]);
  }
  return j;
}

Check<double> in_range(double lo, double hi) {
  return [lo, hi](const double& v) {
    if (std::isfinite(v) && v >= lo && v <= hi) return std::string();
    std::ostringstream s;
    s << "must be in [" << lo << ", " << hi << "]";
    return s.str();
  };
}

Check<double> finite() {
  return [](const double& v) { return std::isfinite(v) ? "" : "must be a finite number"; };
}

Check<std::string> one_of(const std::vector<std::string>& allowed) {
  return [allowed](const std::string& v) {
    std::string list;
    for (auto& a : allowed) {
      if (a == v) return std::string();
      list += (list.empty() ? "" : ", ") + a;
    }
    return "'" + v + "' is not one of " + list;
  };
}

}  // namespace lethe
