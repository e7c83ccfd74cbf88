// carsync: the operator's tool for the embedded stores and instance environments.
// Exit codes: 0 ok, 1 the operation failed, 2 bad usage (arguments, config file, unknown id).
// Every error is one line on stderr.
#include "backend/cid.hpp"
#include "backend/local_cas.hpp"
#include "backend/local_kv.hpp"
#include "carsync/config.hpp"
#include "cmd/instance_env.hpp"
#include "core/error.hpp"
#include "core/apply_state.hpp"
#include "core/clock.hpp"
#include "io/atomic_json.hpp"
#include "io/data_dir_lock.hpp"
#include "io/secure_fs.hpp"
#include "io/staged_apply.hpp"

#include <CLI/CLI.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <exception>
#include <filesystem>
#include <functional>
#include <iostream>
#include <string>
#include <string_view>

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using carsync::Result;

constexpr int kOk = 0;
constexpr int kFailed = 1;
constexpr int kUsage = 2;
constexpr int kBusy = 3;  // data_dir is owned by a running carsyncd

// Everything the command line can set; subcommands read what they need.
struct Args {
  std::string data_dir;
  std::string config;
  std::string hkey, key, value;
  std::string file, cid, output;
  std::string instance_id;
};

// The chosen subcommand's action, run after the whole command line has parsed.
using Command = std::function<int(const Args&)>;

int report(int code, std::string_view message) {
  std::cerr << "carsync: " << message << '\n';
  return code;
}

Result<carsync::NodeConfig> load_config(const std::string& file) {
  try {
    return carsync::load_node_config(file);
  } catch (const std::exception& e) {  // ConfigError: its text names the file and the problem
    return carsync::make_error(carsync::errc::bad_config, e.what());
  }
}

// --data-dir, else data_dir from --config.
Result<fs::path> data_dir(const Args& args) {
  if (!args.data_dir.empty()) return fs::path(args.data_dir);
  if (args.config.empty()) return carsync::make_error(carsync::errc::bad_config, "--data-dir or --config is required");
  auto config = load_config(args.config);
  if (!config) return config.error();
  return config->data_dir;
}

// Runs `body` with the store at <data_dir>/<subdir>; a missing data dir is a usage error.
template <class Store, class Body>
int with_store(const Args& args, std::string_view subdir, Body&& body) {
  auto dir = data_dir(args);
  if (!dir) return report(kUsage, dir.error().message);
  Store store(*dir / subdir);
  return body(store);
}

int kv_hget(const Args& args) {
  return with_store<carsync::backend::LocalKv>(args, "kv", [&](auto& kv) {
    auto value = kv.hget(args.hkey, args.key);
    if (!value) return report(kFailed, value.error().message);
    if (!*value) return report(kFailed, "no value for key \"" + args.key + "\" in \"" + args.hkey + "\"");
    std::cout << json::serialize(**value) << '\n';
    return kOk;
  });
}

int kv_hgetall(const Args& args) {
  return with_store<carsync::backend::LocalKv>(args, "kv", [&](auto& kv) {
    auto all = kv.hgetall(args.hkey);
    if (!all) return report(kFailed, all.error().message);
    std::cout << json::serialize(*all) << '\n';
    return kOk;
  });
}

int kv_hset(const Args& args) {
  boost::system::error_code ec;
  json::value value = json::parse(args.value, ec);
  if (ec) return report(kUsage, "JSON value does not parse: " + ec.message());
  return with_store<carsync::backend::LocalKv>(args, "kv", [&](auto& kv) {
    if (auto r = kv.hset(args.hkey, args.key, value); !r) return report(kFailed, r.error().message);
    std::cout << "ok\n";
    return kOk;
  });
}

int cas_put(const Args& args) {
  return with_store<carsync::backend::LocalCas>(args, "cas", [&](auto& cas) {
    auto cid = cas.put(args.file);
    if (!cid) return report(kFailed, cid.error().message);
    std::cout << *cid << '\n';
    return kOk;
  });
}

int cas_get(const Args& args) {
  if (auto d = carsync::backend::digest_from_cid(args.cid); !d) return report(kUsage, d.error().message);
  return with_store<carsync::backend::LocalCas>(args, "cas", [&](auto& cas) {
    if (auto r = cas.export_to(args.cid, args.output); !r) return report(kFailed, r.error().message);
    return kOk;
  });
}

int env(const Args& args) {
  if (args.config.empty()) return report(kUsage, "--config is required");
  auto config = load_config(args.config);
  if (!config) return report(kUsage, config.error().message);
  for (const auto& instance : config->instances) {
    if (instance.id != args.instance_id) continue;
    for (const auto& var : carsync::cmd::instance_env(instance, !instance.system_volume.empty()))
      std::cout << var.name << '=' << var.value << '\n';
    return kOk;
  }
  return report(kUsage, "unknown instance id \"" + args.instance_id + "\"");
}

// Finishes or undoes, from its journal, each apply that a crash of carsyncd interrupted:
// what carsyncd does at start-up, for an operator who wants to see the outcome first. Run
// it only while carsyncd is stopped. It does not start containers.
int recover(const Args& args) {
  if (args.config.empty()) return report(kUsage, "--config is required");
  auto config = load_config(args.config);
  if (!config) return report(kUsage, config.error().message);
  // Held for the whole recovery: a running carsyncd refuses it, and none can start meanwhile.
  auto lock = carsync::io::DataDirLock::acquire(config->data_dir);
  if (!lock) return report(kBusy, lock.error().message + "; it recovers at its own start-up");
  int code = kOk;
  for (const auto& instance : config->instances) {
    const auto journal =
        config->data_dir / "instances" / instance.id / "sync_history" / "state" / "apply_journal.json";
    auto done = carsync::io::recover_apply(journal);
    if (!done) {
      code = report(kFailed, instance.id + ": " + done.error().message);
      continue;
    }
    using carsync::io::RecoveryAction;
    std::cout << instance.id << ": "
              << (*done == RecoveryAction::rolled_back      ? "rolled back"
                  : *done == RecoveryAction::rolled_forward ? "rolled forward"
                                                            : "nothing")
              << '\n';
  }
  return code;
}

// Makes `sub` select `run` when it appears on the command line.
void on_parsed(CLI::App* sub, Command& chosen, Command run) {
  sub->callback([&chosen, run = std::move(run)] { chosen = run; });
}

// After an uncertain apply the instance keeps its container stopped (current_apply.json
// carries "halted": true) until an operator has looked at the volume and says so here.
int unhalt(const Args& args) {
  if (args.config.empty()) return report(kUsage, "--config is required");
  auto config = load_config(args.config);
  if (!config) return report(kUsage, config.error().message);
  // Never behind a running daemon's back: it would keep the instance halted in memory.
  auto lock = carsync::io::DataDirLock::acquire(config->data_dir);
  if (!lock)
    return report(kBusy, lock.error().message + "; clear the halt through the running node (Node::unhalt) "
                         "or stop carsyncd first");
  const auto state = config->data_dir / "instances" / args.instance_id / "sync_history" / "state";
  auto dir = carsync::io::open_root_dir(state);
  if (!dir) return report(kFailed, args.instance_id + ": " + dir.error().message);
  auto current = carsync::io::read_json_at(dir->get(), "current_apply.json");
  if (!current) return report(kFailed, args.instance_id + ": " + current.error().message);
  if (!carsync::core::is_halted(&*current)) {
    std::cout << args.instance_id << ": not halted\n";
    return kOk;
  }
  auto cleared = carsync::core::clear_halt(current->as_object(), carsync::core::SystemClock{}.now());
  if (auto w = carsync::io::write_json_at(dir->get(), "current_apply.json", cleared); !w)
    return report(kFailed, args.instance_id + ": " + w.error().message);
  std::cout << args.instance_id << ": halt cleared; the instance resumes when carsyncd starts\n";
  return kOk;
}

void add_kv(CLI::App& app, Args& args, Command& chosen) {
  auto* kv = app.add_subcommand("kv", "The embedded hash store (<data_dir>/kv)")->require_subcommand(1);

  auto* hget = kv->add_subcommand("hget", "Print one value as JSON");
  hget->add_option("HKEY", args.hkey)->required();
  hget->add_option("KEY", args.key)->required();
  on_parsed(hget, chosen, kv_hget);

  auto* hgetall = kv->add_subcommand("hgetall", "Print every key's value as one JSON object");
  hgetall->add_option("HKEY", args.hkey)->required();
  on_parsed(hgetall, chosen, kv_hgetall);

  auto* hset = kv->add_subcommand("hset", "Store a JSON value");
  hset->add_option("HKEY", args.hkey)->required();
  hset->add_option("KEY", args.key)->required();
  hset->add_option("JSON", args.value, "The value as JSON text (a string needs its quotes)")->required();
  on_parsed(hset, chosen, kv_hset);
}

void add_cas(CLI::App& app, Args& args, Command& chosen) {
  auto* cas = app.add_subcommand("cas", "The embedded content store (<data_dir>/cas)")->require_subcommand(1);

  auto* put = cas->add_subcommand("put", "Store a file and print its CID");
  put->add_option("FILE", args.file)->required();
  on_parsed(put, chosen, cas_put);

  auto* get = cas->add_subcommand("get", "Write a verified copy of a blob");
  get->add_option("CID", args.cid)->required();
  get->add_option("-o,--output", args.output, "Destination file")->required();
  on_parsed(get, chosen, cas_get);
}

void add_env(CLI::App& app, Args& args, Command& chosen) {
  auto* env_cmd = app.add_subcommand("env", "Print the R1_* variables an instance's container gets");
  env_cmd->add_option("ID", args.instance_id, "Instance id")->required();
  on_parsed(env_cmd, chosen, env);
}

void add_recover(CLI::App& app, Command& chosen) {
  auto* sub = app.add_subcommand(
      "recover", "Finish or undo every interrupted apply (as carsyncd does at start-up); run while carsyncd is stopped");
  on_parsed(sub, chosen, recover);
}

void add_unhalt(CLI::App& app, Args& args, Command& chosen) {
  auto* sub = app.add_subcommand("unhalt", "Let an instance halted by an uncertain apply run again");
  sub->add_option("ID", args.instance_id, "Instance id")->required();
  on_parsed(sub, chosen, unhalt);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"carsync operator tool"};
  app.require_subcommand(1);
  // Lets the global options also follow a subcommand (`carsync env --config FILE ID`).
  app.fallthrough();

  Args args;
  app.add_option("--data-dir", args.data_dir, "Node data directory (stores at <dir>/cas and <dir>/kv)");
  app.add_option("--config", args.config, "Node configuration file (supplies data_dir and instances)");

  Command chosen;
  add_kv(app, args, chosen);
  add_cas(app, args, chosen);
  add_env(app, args, chosen);
  add_recover(app, chosen);
  add_unhalt(app, args, chosen);

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return report(kUsage, e.what());
  }
  return chosen(args);
}
