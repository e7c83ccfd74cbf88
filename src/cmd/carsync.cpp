// carsync: the operator's tool. A client of carsyncd's control API (docs/control-api.md) for
// status, watch, instances, publish, history and unhalt; offline tools for the embedded
// stores, instance environments and recovery. Exit codes: cmd/cli_api.hpp (and --help).
// Every error is one line on stderr.
#include "backend/cid.hpp"
#include "backend/local_cas.hpp"
#include "backend/local_kv.hpp"
#include "carsync/config.hpp"
#include "cmd/cli_api.hpp"
#include "cmd/cli_render.hpp"
#include "cmd/cli_watch.hpp"
#include "cmd/instance_env.hpp"
#include "core/error.hpp"
#include "core/apply_state.hpp"
#include "core/clock.hpp"
#include "core/path_rules.hpp"
#include "core/record.hpp"
#include "io/atomic_json.hpp"
#include "io/data_dir_lock.hpp"
#include "io/key_file.hpp"
#include "io/secure_fs.hpp"
#include "io/staged_apply.hpp"

#include <CLI/CLI.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#ifndef CARSYNC_VERSION
#define CARSYNC_VERSION "unknown"
#endif

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using carsync::Result;

using carsync::cmd::kBusy;
using carsync::cmd::kFailed;
using carsync::cmd::kNotFound;
using carsync::cmd::kOk;
using carsync::cmd::kUnreachable;
using carsync::cmd::kUsage;
using Verb = carsync::net::HttpClient::Verb;

// Everything the command line can set; subcommands read what they need.
struct Args {
  std::string data_dir;
  std::string config;
  std::string socket;
  bool json = false;
  std::string hkey, key, value;
  std::string file, cid, output;
  std::string instance_id;
  bool force = false;         // kv hset: store a CHAINSTORE_SYNC record that fails validation
  bool delete_state = false;  // instances rm
  bool no_wait = false;       // publish
  double timeout_s = 0;       // publish: 0 waits as long as the publish takes
  double reconnect_for_s = 30;  // watch
  std::string dir = "both";   // history
  std::vector<std::string> update_args;  // instances update [ID] FILE
  unsigned limit = 20;        // history
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

// Where the embedded stores live: --data-dir, else the --config file's backend.store_dir,
// else its data_dir. A node on the r1 backend has no local stores to open.
Result<fs::path> store_root(const Args& args) {
  if (!args.data_dir.empty()) return fs::path(args.data_dir);
  if (args.config.empty()) return carsync::make_error(carsync::errc::bad_config, "--data-dir or --config is required");
  auto config = load_config(args.config);
  if (!config) return config.error();
  if (config->backend.kind != "local")
    return carsync::make_error(carsync::errc::bad_config,
                               args.config + ": backend \"" + config->backend.kind +
                                   "\" keeps no local stores (kv and cas work on the \"local\" backend)");
  return config->backend.store_dir.empty() ? config->data_dir : config->backend.store_dir;
}

// Runs `body` with the store at <root>/<subdir>. A --data-dir that holds no store is
// refused rather than given a new empty one (a mistyped path would otherwise "work" and
// show nothing): the store's own directory must exist, or the directory must be a node's
// data_dir (carsync.lock: carsyncd creates the stores on first use). A --config names the
// node's own stores, which the command may create as carsyncd would.
template <class Store, class Body>
int with_store(const Args& args, std::string_view subdir, Body&& body) {
  auto root = store_root(args);
  if (!root) return report(kUsage, root.error().message);
  std::error_code ec;
  if (!args.data_dir.empty() && !fs::is_directory(*root / subdir, ec) && !fs::exists(*root / "carsync.lock", ec))
    return report(kUsage, root->string() + " holds no carsync store (neither " + std::string(subdir) +
                              "/ nor carsync.lock): check --data-dir");
  Store store(*root / subdir);
  return body(store);
}

// A CHAINSTORE_SYNC value is what consumers apply: it must pass the reference's record rules
// (core::validate_record). With --config, the consumers of that key on this node also check
// that every archive path lands in one of their volumes; otherwise only the shape is checked.
std::vector<std::string> sync_record_problems(const Args& args, const json::value& record) {
  std::vector<std::string> problems = carsync::core::validate_record_shape(record);
  if (!problems.empty() || args.config.empty()) return problems;
  auto config = load_config(args.config);
  if (!config) return {config.error().message};
  carsync::core::MountPolicy policy{config->volume_roots, config->legacy_volumes_root};
  for (const auto& instance : config->instances) {
    if (instance.sync.role != carsync::Role::consumer || instance.sync.key != args.key) continue;
    for (auto& why : carsync::core::validate_record(record, instance.volumes, policy))
      problems.push_back("consumer " + instance.id + ": " + why);
  }
  return problems;
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
  if (args.hkey == carsync::core::sync_hkey && !args.force) {
    auto problems = sync_record_problems(args, value);
    if (!problems.empty()) {
      std::string all;
      for (const auto& p : problems) all += (all.empty() ? "" : "; ") + p;
      return report(kUsage, "not a valid sync record (--force stores it anyway): " + all);
    }
  }
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

// A new signing key: the secret in --out (0600, never overwriting), its public key on stdout
// as the one line consumers list under "trust": {"keys": [...]}.
int keys_generate(const Args& args) {
  const auto key = carsync::core::SecretKey::generate();
  if (auto w = carsync::io::write_new_secret_key(args.output, key); !w) {
    // A file already there is the caller's to resolve (exit 2); other failures are I/O (1).
    std::error_code ec;
    const bool there = std::filesystem::symlink_status(args.output, ec).type() != std::filesystem::file_type::not_found;
    return report(there && !ec ? kUsage : kFailed, w.error().message);
  }
  std::cout << key.public_key().text() << '\n';
  return kOk;
}

int keys_show(const Args& args) {
  auto key = carsync::io::read_secret_key(args.file);
  if (!key) return report(kUsage, key.error().message);
  std::cout << key->public_key().text() << '\n';
  return kOk;
}

// Makes `sub` select `run` when it appears on the command line.
void on_parsed(CLI::App* sub, Command& chosen, Command run) {
  sub->callback([&chosen, run = std::move(run)] { chosen = run; });
}

// The control socket: --socket, else the --config file's control_socket, else the default.
Result<std::string> control_socket(const Args& args) {
  if (!args.socket.empty()) return args.socket;
  if (args.config.empty()) return std::string(carsync::cmd::kDefaultSocket);
  auto config = load_config(args.config);
  if (!config) return config.error();
  return config->control_socket;
}

// The outcome of one API call: its answer, or the exit code already reported.
struct Called {
  int code = kOk;
  carsync::cmd::ApiAnswer answer;
};

constexpr auto kApiTimeout = std::chrono::seconds(30);

Called call_api(const Args& args, Verb verb, const std::string& route, const std::string& body = {},
                std::chrono::steady_clock::duration timeout = kApiTimeout) {
  auto socket = control_socket(args);
  if (!socket) return {report(kUsage, socket.error().message), {}};
  auto answer = carsync::cmd::api_call(*socket, verb, route, body, timeout);
  if (!answer)
    return {report(kUnreachable, "cannot reach carsyncd on " + *socket + ": " + answer.error().message), {}};
  if (!answer->ok()) return {report(carsync::cmd::exit_code_for(*answer), carsync::cmd::error_text(*answer)), *answer};
  return {kOk, std::move(*answer)};
}

// --json: the API's answer as it came.
int print_json(const carsync::cmd::ApiAnswer& answer) {
  std::cout << answer.body;
  if (answer.body.empty() || answer.body.back() != '\n') std::cout << '\n';
  return kOk;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string instance_route(const std::string& id, std::string_view rest = "") {
  return "/v1/instances/" + carsync::cmd::url_escape(id) + std::string(rest);
}

// FILE, or stdin for "-": the JSON text of an instance or a request.
Result<std::string> read_input(const std::string& file) {
  std::string text;
  if (file == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream in(file, std::ios::binary);
    if (!in) return carsync::make_error(carsync::errc::bad_config, "cannot read " + file);
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  boost::system::error_code ec;
  json::parse(text, ec);
  if (ec) return carsync::make_error(carsync::errc::bad_config, (file == "-" ? "stdin" : file) + ": not JSON: " + ec.message());
  return text;
}

int status(const Args& args) {
  const std::string route = args.instance_id.empty() ? "/v1/instances" : instance_route(args.instance_id);
  auto r = call_api(args, Verb::get, route);
  if (r.code != kOk) return r.code;
  if (args.json) return print_json(r.answer);
  if (!r.answer.json.is_object()) return report(kFailed, "the daemon's answer is not a JSON object");
  json::object node = args.instance_id.empty() ? r.answer.json.get_object()
                                               : json::object{{"instances", json::array{r.answer.json}}};
  std::cout << carsync::cmd::render_status(node, now_s());
  return kOk;
}

int watch(const Args& args) {
  auto socket = control_socket(args);
  if (!socket) return report(kUsage, socket.error().message);
  return carsync::cmd::run_watch({*socket, args.json, args.reconnect_for_s});
}

int instances_add(const Args& args) {
  auto body = read_input(args.file);
  if (!body) return report(kUsage, body.error().message);
  auto r = call_api(args, Verb::post, "/v1/instances", *body);
  if (r.code != kOk) return r.code;
  if (args.json) return print_json(r.answer);
  const auto* id = r.answer.json.is_object() ? r.answer.json.get_object().if_contains("id") : nullptr;
  std::cout << "added " << (id && id->is_string() ? std::string(id->get_string()) : std::string("?")) << '\n';
  return kOk;
}

// `instances update [ID] FILE|-`: the id is ID, else the file's "id"; both given must agree.
int instances_update(const Args& args) {
  auto body = read_input(args.file);
  if (!body) return report(kUsage, body.error().message);
  const json::value parsed = json::parse(*body);
  const json::value* id = parsed.is_object() ? parsed.get_object().if_contains("id") : nullptr;
  const std::string in_file = id && id->is_string() ? std::string(id->get_string()) : std::string();
  const std::string source = args.file == "-" ? std::string("stdin") : args.file;
  if (!args.instance_id.empty() && !in_file.empty() && in_file != args.instance_id)
    return report(kUsage, source + ": its \"id\" is \"" + in_file + "\", not \"" + args.instance_id + "\"");
  const std::string name = args.instance_id.empty() ? in_file : args.instance_id;
  if (name.empty()) return report(kUsage, source + ": the instance has no \"id\" (or give ID before FILE)");
  auto r = call_api(args, Verb::put, instance_route(name), *body);
  if (r.code != kOk) return r.code;
  if (args.json) return print_json(r.answer);
  std::cout << "updated " << name << '\n';
  return kOk;
}

int instances_rm(const Args& args) {
  auto r = call_api(args, Verb::del, instance_route(args.instance_id, args.delete_state ? "?delete_state=true" : ""));
  if (r.code != kOk) return r.code;
  if (args.json) return print_json(r.answer);
  std::cout << "removed " << args.instance_id << (args.delete_state ? " (and its state)" : "") << '\n';
  return kOk;
}

// Without FILE, publish repeats the instance's newest publish: its archive_paths, metadata
// and runtime, from the sent history (what an operator wants after a bad archive).
int last_request(const Args& args, std::string& body) {
  auto r = call_api(args, Verb::get, instance_route(args.instance_id, "/history?dir=sent&limit=1"));
  if (r.code != kOk) return r.code;
  const json::object* entry = nullptr;
  if (const auto* o = r.answer.json.if_object())
    if (const auto* sent = o->if_contains("sent"); sent && sent->is_array() && !sent->get_array().empty())
      entry = sent->get_array().back().if_object();
  const json::value* m = entry ? entry->if_contains("manifest") : nullptr;
  const json::object* manifest = m ? m->if_object() : nullptr;
  const json::value* paths = manifest ? manifest->if_contains("archive_paths") : nullptr;
  if (!paths || !paths->is_array())
    return report(kUsage, args.instance_id + ": no earlier publish to repeat; give the request as FILE "
                                             "(what request.json would hold, e.g. {\"archive_paths\": [\"/app/data\"]})");
  json::object request{{"archive_paths", *paths}};
  for (std::string_view key : {"metadata", "runtime"})
    if (const auto* v = entry->if_contains(key); v && v->is_object()) request[key] = *v;
  body = json::serialize(request);
  return kOk;
}

int publish(const Args& args) {
  std::string body;
  if (!args.file.empty()) {
    auto text = read_input(args.file);
    if (!text) return report(kUsage, text.error().message);
    body = std::move(*text);
  } else if (int code = last_request(args, body); code != kOk) {
    return code;
  }
  // Waiting for the publish takes as long as the archive and upload do: no step deadline
  // unless --timeout says so.
  const std::chrono::steady_clock::duration timeout =
      args.timeout_s > 0 ? std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                               std::chrono::duration<double>(args.timeout_s))
                         : std::chrono::steady_clock::duration(std::chrono::hours(24 * 365));
  auto r = call_api(args, Verb::post, instance_route(args.instance_id, args.no_wait ? "/publish?wait=false" : "/publish"),
                    body, args.no_wait ? std::chrono::steady_clock::duration(kApiTimeout) : timeout);
  if (r.code != kOk) return r.code;
  if (args.json) return print_json(r.answer);
  if (args.no_wait) {
    std::cout << args.instance_id << ": publish accepted\n";
    return kOk;
  }
  const json::object* o = r.answer.json.is_object() ? &r.answer.json.get_object() : nullptr;
  auto field = [&](std::string_view k) {
    const json::value* v = o ? o->if_contains(k) : nullptr;
    return v ? (v->is_string() ? std::string(v->get_string()) : json::serialize(*v)) : std::string("-");
  };
  const json::value* size = o ? o->if_contains("size") : nullptr;
  std::cout << args.instance_id << ": published " << field("cid") << " version " << field("version") << " ("
            << (size && size->is_number() ? carsync::cmd::human_bytes(size->to_number<std::uint64_t>()) : "-")
            << ")\n";
  return kOk;
}

int history(const Args& args) {
  auto r = call_api(args, Verb::get,
                    instance_route(args.instance_id, "/history?dir=" + args.dir + "&limit=" + std::to_string(args.limit)));
  if (r.code != kOk) return r.code;
  if (args.json) return print_json(r.answer);
  if (!r.answer.json.is_object()) return report(kFailed, "the daemon's answer is not a JSON object");
  std::cout << carsync::cmd::render_history(r.answer.json.get_object());
  return kOk;
}

// After an uncertain apply the instance keeps its container stopped (current_apply.json
// carries "halted": true) until an operator has looked at the volume and says so here:
// through the running daemon's API, or, only when no carsyncd runs, in the state file.
int unhalt_offline(const Args& args, const std::string& socket) {
  auto config = load_config(args.config);
  if (!config) return report(kUsage, config.error().message);
  // Never behind a running daemon's back: it would keep the instance halted in memory.
  auto lock = carsync::io::DataDirLock::acquire(config->data_dir);
  if (!lock)
    return report(kBusy, lock.error().message + ", but its control socket " + socket +
                             " does not answer; nothing changed");
  const auto state = config->data_dir / "instances" / args.instance_id / "sync_history" / "state";
  auto dir = carsync::io::open_root_dir(state);
  if (!dir) return report(kNotFound, args.instance_id + ": " + dir.error().message);
  auto current = carsync::io::read_json_at(dir->get(), "current_apply.json");
  if (!current) return report(kFailed, args.instance_id + ": " + current.error().message);
  if (!carsync::core::is_halted(&*current)) {
    std::cout << args.instance_id << ": not halted\n";
    return kOk;
  }
  auto cleared = carsync::core::clear_halt(current->as_object(), carsync::core::SystemClock{}.now());
  if (auto w = carsync::io::write_json_at(dir->get(), "current_apply.json", cleared); !w)
    return report(kFailed, args.instance_id + ": " + w.error().message);
  std::cout << args.instance_id << ": halt cleared in the state file (no carsyncd answers on " << socket
            << " and none holds the data_dir); the instance resumes when carsyncd starts\n";
  return kOk;
}

int unhalt(const Args& args) {
  auto socket = control_socket(args);
  if (!socket) return report(kUsage, socket.error().message);
  auto answer = carsync::cmd::api_call(*socket, Verb::post, instance_route(args.instance_id, "/unhalt"), "", kApiTimeout);
  if (!answer) {
    if (args.config.empty())
      return report(kUnreachable, "cannot reach carsyncd on " + *socket + ": " + answer.error().message +
                                      " (with --config, unhalt clears the halt in the state file when carsyncd is not running)");
    return unhalt_offline(args, *socket);
  }
  if (!answer->ok()) return report(carsync::cmd::exit_code_for(*answer), carsync::cmd::error_text(*answer));
  if (args.json) return print_json(*answer);
  std::cout << args.instance_id << ": unhalted\n";
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
  hset->add_flag("--force", args.force, "Store a CHAINSTORE_SYNC value that is not a valid sync record");
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

void add_keys(CLI::App& app, Args& args, Command& chosen) {
  auto* keys = app.add_subcommand("keys", "Ed25519 keys that sign published records")->require_subcommand(1);

  auto* generate = keys->add_subcommand("generate", "Write a new secret key file (mode 0600) and print its public key");
  generate->add_option("--out", args.output, "The secret key file to create (never overwritten)")->required();
  on_parsed(generate, chosen, keys_generate);

  auto* show = keys->add_subcommand("show", "Print the public key of a secret key file");
  show->add_option("FILE", args.file, "A secret key file")->required();
  on_parsed(show, chosen, keys_show);
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
  auto* sub = app.add_subcommand(
      "unhalt", "Let an instance halted by an uncertain apply run again (through carsyncd; with --config and no "
                "carsyncd running, in its state file)");
  sub->add_option("ID", args.instance_id, "Instance id")->required();
  on_parsed(sub, chosen, unhalt);
}

void add_api_commands(CLI::App& app, Args& args, Command& chosen) {
  auto* st = app.add_subcommand("status", "One line per instance: role, phase, last sync, size, CID, state");
  st->add_option("ID", args.instance_id, "Only this instance");
  on_parsed(st, chosen, status);

  auto* w = app.add_subcommand(
      "watch", "Live progress of every archive, upload, download and apply (Ctrl-C ends it); without a "
               "terminal, one line per change");
  w->add_option("--reconnect-for", args.reconnect_for_s,
                "When carsyncd goes away, keep reconnecting this many seconds before ending with 5 (0: end at once)")
      ->check(CLI::Range(0.0, 86400.0));
  on_parsed(w, chosen, watch);

  auto* inst = app.add_subcommand("instances", "Add, update or remove instances through carsyncd")->require_subcommand(1);
  auto* add = inst->add_subcommand("add", "Add an instance (the JSON object of a configuration file's instances)");
  add->add_option("FILE", args.file, "The instance as JSON; - reads stdin")->required();
  on_parsed(add, chosen, instances_add);
  auto* update = inst->add_subcommand("update", "Replace an instance added through the API: update [ID] FILE|-");
  update->add_option("ID_FILE", args.update_args, "[ID] and the instance as JSON (- reads stdin); ID defaults to its \"id\"")
      ->required()
      ->expected(1, 2);
  on_parsed(update, chosen, [](const Args& a) {
    Args with = a;
    with.file = a.update_args.back();
    if (a.update_args.size() == 2) with.instance_id = a.update_args.front();
    return instances_update(with);
  });
  auto* rm = inst->add_subcommand("rm", "Remove an instance added through the API");
  rm->add_option("ID", args.instance_id, "Instance id")->required();
  rm->add_flag("--delete-state", args.delete_state, "Also delete its host-private state");
  on_parsed(rm, chosen, instances_rm);

  auto* pub = app.add_subcommand("publish", "Publish a snapshot now and wait for it (what request.json asks)");
  pub->add_option("ID", args.instance_id, "Instance id")->required();
  pub->add_option("FILE", args.file,
                  "The request as JSON (what request.json would hold); - reads stdin; default: the newest publish's again");
  pub->add_flag("--no-wait", args.no_wait, "Return once carsyncd has accepted the request");
  pub->add_option("--timeout", args.timeout_s, "Give up waiting after this many seconds of silence (default: never)")
      ->check(CLI::NonNegativeNumber);
  on_parsed(pub, chosen, publish);

  auto* hist = app.add_subcommand("history", "Snapshots an instance sent or received, oldest first");
  hist->add_option("ID", args.instance_id, "Instance id")->required();
  hist->add_option("--dir", args.dir, "sent, received or both")->check(CLI::IsMember({"sent", "received", "both"}));
  hist->add_option("--limit", args.limit, "Newest entries per direction (1..1000)")->check(CLI::Range(1, 1000));
  on_parsed(hist, chosen, history);
}

constexpr const char* kFooter =
    "Exit codes (stable):\n"
    "  0  done\n"
    "  1  the operation failed (the daemon or the store refused or failed it)\n"
    "  2  bad usage or input: arguments, a file, the configuration, a 400 answer\n"
    "  3  busy: a running carsyncd owns the data_dir, or the API answered 409 conflict\n"
    "  4  not found: no such instance (404)\n"
    "  5  cannot reach carsyncd on the control socket (or it is stopping: 503)\n"
    "The control socket: --socket, else the --config file's control_socket, else /run/carsync.sock.\n"
    "--json prints the API's JSON answer as it came (watch: each event's data, one per line).";

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"carsync: operate a carsync node (a client of carsyncd's control API) and its local stores"};
  app.require_subcommand(1);
  // Lets the global options also follow a subcommand (`carsync env --config FILE ID`).
  app.fallthrough();
  app.set_version_flag("--version", std::string("carsync ") + CARSYNC_VERSION);
  app.footer(kFooter);

  Args args;
  app.add_option("--data-dir", args.data_dir, "Node data directory (stores at <dir>/cas and <dir>/kv)");
  app.add_option("--config", args.config, "Node configuration file (supplies data_dir, instances, control_socket)");
  app.add_option("--socket", args.socket, "carsyncd's control socket");
  app.add_flag("--json", args.json, "Print the API's JSON answer instead of a table");

  Command chosen;
  add_api_commands(app, args, chosen);
  add_kv(app, args, chosen);
  add_cas(app, args, chosen);
  add_env(app, args, chosen);
  add_keys(app, args, chosen);
  add_recover(app, chosen);
  add_unhalt(app, args, chosen);

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return report(kUsage, e.what());
  }
  try {
    return chosen(args);
  } catch (const std::exception& e) {  // a bug, not an outcome: still one line and a code
    return report(kFailed, e.what());
  }
}
