#pragma once
// The JSON form of carsync's status (docs/control-api.md "Instance status object"): what the
// control API serves, its event stream carries and the CLI and status page read.
#include "carsync/status.hpp"

#include <boost/json/object.hpp>

namespace carsync::runtime {

boost::json::object to_json(const InstanceStatus& s);
// {"node_id", "file_engine", "running", "generation", "instances": [...]}
boost::json::object to_json(const NodeStatus& s);
// {"generation", "removed", "instance"}
boost::json::object to_json(const StatusEvent& e);

}  // namespace carsync::runtime
