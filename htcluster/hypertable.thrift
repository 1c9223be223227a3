// htcluster's interface description of the Hypertable ThriftBroker, release
// 0.9.8.11 (../shared/protocol.md).  Written for this project from the wire
// facts: every method name, argument field id, type and default, every
// struct field id and every enum value matches the broker, so a client
// generated from this file and one generated from upstream's Client.thrift /
// Hql.thrift exchange identical bytes.
//
// Regenerate the Python code with `python scripts/gen_thrift.py`.

namespace py htcluster._thrift

// ---------------------------------------------------------------- ids

typedef i64 Namespace     // per connection on a real broker: never shared
typedef i64 Future
typedef i64 Scanner
typedef i64 ScannerAsync
typedef i64 Mutator
typedef i64 MutatorAsync
typedef binary Value
typedef list<string> CellAsArray  // [row, cf, cq, value, ts, rev, flag]
typedef binary CellsSerialized    // protocol.md appendix A

// ---------------------------------------------------------------- scans

// A range of row keys; both ends inclusive unless told otherwise.
struct RowInterval {
  1: optional string start_row
  2: optional bool start_inclusive = true
  3: optional string end_row
  4: optional bool end_inclusive = true
  5: optional binary start_row_binary
  6: optional binary end_row_binary
}

// A range of cells, from (start_row, start_column) to (end_row, end_column).
struct CellInterval {
  1: optional string start_row
  2: optional string start_column
  3: optional bool start_inclusive = true
  4: optional string end_row
  5: optional string end_column
  6: optional bool end_inclusive = true
}

// Bits of ColumnPredicate.operation; value bits and qualifier bits OR together.
enum ColumnPredicateOperation {
  EXACT_MATCH = 1,
  PREFIX_MATCH = 2,
  REGEX_MATCH = 4,
  VALUE_MATCH = 7,
  QUALIFIER_EXACT_MATCH = 256,
  QUALIFIER_PREFIX_MATCH = 512,
  QUALIFIER_REGEX_MATCH = 1024,
  QUALIFIER_MATCH = 1792
}

struct ColumnPredicate {
  1: optional string column_family
  2: optional string column_qualifier
  3: i32 operation
  4: optional string value
}

// What a scan returns.  Field 14 is declared before 10 upstream, and the
// Python constructor follows declaration order, so the order is kept here.
struct ScanSpec {
  1: optional list<RowInterval> row_intervals
  2: optional list<CellInterval> cell_intervals
  3: optional bool return_deletes = false
  4: optional i32 versions = 0
  5: optional i32 row_limit = 0
  6: optional i64 start_time
  7: optional i64 end_time
  8: optional list<string> columns
  9: optional bool keys_only = false
  14: optional i32 cell_limit = 0
  10: optional i32 cell_limit_per_family = 0
  11: optional string row_regexp
  12: optional string value_regexp
  13: optional bool scan_and_filter_rows = false
  15: optional i32 row_offset = 0
  16: optional i32 cell_offset = 0
  17: optional list<ColumnPredicate> column_predicates
  18: optional bool do_not_cache = false
  19: optional bool and_column_predicates = false
}

// ---------------------------------------------------------------- cells

// Matches the FLAG_* constants of the broker's KeySpec.h.
enum KeyFlag {
  DELETE_ROW = 0,
  DELETE_CF = 1,
  DELETE_CELL = 2,
  DELETE_CELL_VERSION = 3,
  INSERT = 255
}

// timestamp and revision are nanoseconds; left unset, the server assigns them.
struct Key {
  1: string row
  2: string column_family
  3: string column_qualifier
  4: optional i64 timestamp
  5: optional i64 revision
  6: KeyFlag flag = KeyFlag.INSERT
}

enum MutatorFlag {
  NO_LOG_SYNC = 1,
  IGNORE_UNKNOWN_CFS = 2,
  NO_LOG = 4
}

// Options of a shared (broker-global, periodically flushed) mutator.
// flush_interval is in milliseconds.
struct MutateSpec {
  1: required string appname = ""
  2: required i32 flush_interval = 1000
  3: required i32 flags = MutatorFlag.IGNORE_UNKNOWN_CFS
}

struct Cell {
  1: Key key
  2: optional Value value
}

// ---------------------------------------------------------------- futures

struct Result {
  1: required bool is_empty
  2: required i64 id
  3: required bool is_scan
  4: required bool is_error
  5: optional i32 error
  6: optional string error_msg
  7: optional list<Cell> cells
}

struct ResultAsArrays {
  1: required bool is_empty
  2: required i64 id
  3: required bool is_scan
  4: required bool is_error
  5: optional i32 error
  6: optional string error_msg
  7: optional list<CellAsArray> cells
}

struct ResultSerialized {
  1: required bool is_empty
  2: required i64 id
  3: required bool is_scan
  4: required bool is_error
  5: optional i32 error
  6: optional string error_msg
  7: optional CellsSerialized cells
}

// ---------------------------------------------------------------- schema

struct NamespaceListing {
  1: required string name
  2: required bool is_namespace
}

struct TableSplit {
  1: optional binary start_row
  2: optional binary end_row
  3: optional string location
  4: optional string ip_address
  5: optional string hostname
}

// ttl is in seconds.
struct ColumnFamilyOptions {
  1: optional i32 max_versions
  2: optional i32 ttl
  3: optional bool time_order_desc
  4: optional bool counter
}

struct ColumnFamilySpec {
  1: string name
  2: string access_group
  3: bool deleted
  4: optional i64 generation
  5: optional i32 id
  6: bool value_index
  7: bool qualifier_index
  8: optional ColumnFamilyOptions options
}

struct AccessGroupOptions {
  1: optional i16 replication
  2: optional i32 blocksize
  3: optional string compressor
  4: optional string bloom_filter
  5: optional bool in_memory
}

struct AccessGroupSpec {
  1: string name
  2: optional i64 generation
  3: optional AccessGroupOptions options
  4: optional ColumnFamilyOptions defaults
}

struct Schema {
  1: optional map<string, AccessGroupSpec> access_groups
  2: optional map<string, ColumnFamilySpec> column_families
  3: optional i64 generation
  4: optional i32 version
  5: optional i32 group_commit_interval
  6: optional AccessGroupOptions access_group_defaults
  7: optional ColumnFamilyOptions column_family_defaults
}

// ---------------------------------------------------------------- status

enum StatusCode {
  OK = 0,
  WARNING = 1,
  CRITICAL = 2,
  UNKNOWN = 3
}

struct Status {
  1: required i32 code = StatusCode.OK
  2: required string text
}

// code is a Hypertable error number (protocol.md section 4); message is
// "<error text> - <detail>".
exception ClientException {
  1: i32 code
  2: string message
}

// ---------------------------------------------------------------- HQL

struct HqlResult {
  1: optional list<string> results
  2: optional list<Cell> cells
  3: optional i64 scanner
  4: optional i64 mutator
}

struct HqlResult2 {
  1: optional list<string> results
  2: optional list<CellAsArray> cells
  3: optional i64 scanner
  4: optional i64 mutator
}

struct HqlResultAsArrays {
  1: optional list<string> results
  2: optional list<CellAsArray> cells
  3: optional i64 scanner
  4: optional i64 mutator
}

// ================================================================ services
//
// In each pair below the first name is canonical and the second is the
// pre-0.9.5.4 alias that the broker forwards to it.

service ClientService {

  // ---- namespaces
  void namespace_create(1: string ns) throws (1: ClientException e)
  void create_namespace(1: string ns) throws (1: ClientException e)
  Namespace namespace_open(1: string ns) throws (1: ClientException e)
  Namespace open_namespace(1: string ns) throws (1: ClientException e)
  void namespace_close(1: Namespace ns) throws (1: ClientException e)
  void close_namespace(1: Namespace ns) throws (1: ClientException e)
  bool namespace_exists(1: string ns) throws (1: ClientException e)
  bool exists_namespace(1: string ns) throws (1: ClientException e)
  void namespace_drop(1: string ns, 2: bool if_exists = true)
      throws (1: ClientException e)
  void drop_namespace(1: string ns, 2: bool if_exists = true)
      throws (1: ClientException e)
  list<NamespaceListing> namespace_get_listing(1: Namespace ns)
      throws (1: ClientException e)
  list<NamespaceListing> get_listing(1: Namespace ns)
      throws (1: ClientException e)
  list<string> get_tables(1: Namespace ns) throws (1: ClientException e)

  // ---- tables
  void table_create(1: Namespace ns, 2: string table_name, 3: Schema schema)
      throws (1: ClientException e)
  void table_alter(1: Namespace ns, 2: string table_name, 3: Schema schema)
      throws (1: ClientException e)
  void refresh_table(1: Namespace ns, 2: string table_name)
      throws (1: ClientException e)
  bool table_exists(1: Namespace ns, 2: string name)
      throws (1: ClientException e)
  bool exists_table(1: Namespace ns, 2: string name)
      throws (1: ClientException e)
  string table_get_id(1: Namespace ns, 2: string table_name)
      throws (1: ClientException e)
  string get_table_id(1: Namespace ns, 2: string table_name)
      throws (1: ClientException e)
  string table_get_schema_str(1: Namespace ns, 2: string table_name)
      throws (1: ClientException e)
  string get_schema_str(1: Namespace ns, 2: string table_name)
      throws (1: ClientException e)
  string table_get_schema_str_with_ids(1: Namespace ns, 2: string table_name)
      throws (1: ClientException e)
  string get_schema_str_with_ids(1: Namespace ns, 2: string table_name)
      throws (1: ClientException e)
  Schema table_get_schema(1: Namespace ns, 2: string table_name)
      throws (1: ClientException e)
  Schema get_schema(1: Namespace ns, 2: string table_name)
      throws (1: ClientException e)
  list<TableSplit> table_get_splits(1: Namespace ns, 2: string table_name)
      throws (1: ClientException e)
  list<TableSplit> get_table_splits(1: Namespace ns, 2: string table_name)
      throws (1: ClientException e)
  void table_rename(1: Namespace ns, 2: string name, 3: string new_name)
      throws (1: ClientException e)
  void rename_table(1: Namespace ns, 2: string name, 3: string new_name)
      throws (1: ClientException e)
  void table_drop(1: Namespace ns, 2: string name, 3: bool if_exists = true)
      throws (1: ClientException e)
  void drop_table(1: Namespace ns, 2: string name, 3: bool if_exists = true)
      throws (1: ClientException e)

  // ---- one-shot reads
  Value get_cell(1: Namespace ns, 2: string table_name, 3: string row,
                 4: string column) throws (1: ClientException e)
  list<Cell> get_row(1: Namespace ns, 2: string table_name, 3: string row)
      throws (1: ClientException e)
  list<CellAsArray> get_row_as_arrays(1: Namespace ns, 2: string name,
                                      3: string row)
      throws (1: ClientException e)
  CellsSerialized get_row_serialized(1: Namespace ns, 2: string table_name,
                                     3: string row)
      throws (1: ClientException e)
  list<Cell> get_cells(1: Namespace ns, 2: string table_name,
                       3: ScanSpec scan_spec) throws (1: ClientException e)
  list<CellAsArray> get_cells_as_arrays(1: Namespace ns, 2: string name,
                                        3: ScanSpec scan_spec)
      throws (1: ClientException e)
  CellsSerialized get_cells_serialized(1: Namespace ns, 2: string name,
                                       3: ScanSpec scan_spec)
      throws (1: ClientException e)

  // ---- one-shot writes (each flushes before it returns)
  void set_cell(1: Namespace ns, 2: string table_name, 3: Cell cell)
      throws (1: ClientException e)
  void set_cells(1: Namespace ns, 2: string table_name, 3: list<Cell> cells)
      throws (1: ClientException e)
  void set_cell_as_array(1: Namespace ns, 2: string table_name,
                         3: CellAsArray cell) throws (1: ClientException e)
  void set_cells_as_arrays(1: Namespace ns, 2: string table_name,
                           3: list<CellAsArray> cells)
      throws (1: ClientException e)
  void set_cells_serialized(1: Namespace ns, 2: string table_name,
                            3: CellsSerialized cells)
      throws (1: ClientException e)

  // ---- scanners
  Scanner scanner_open(1: Namespace ns, 2: string table_name,
                       3: ScanSpec scan_spec) throws (1: ClientException e)
  Scanner open_scanner(1: Namespace ns, 2: string table_name,
                       3: ScanSpec scan_spec) throws (1: ClientException e)
  list<Cell> scanner_get_cells(1: Scanner scanner)
      throws (1: ClientException e)
  list<Cell> next_cells(1: Scanner scanner) throws (1: ClientException e)
  list<CellAsArray> scanner_get_cells_as_arrays(1: Scanner scanner)
      throws (1: ClientException e)
  list<CellAsArray> next_cells_as_arrays(1: Scanner scanner)
      throws (1: ClientException e)
  CellsSerialized scanner_get_cells_serialized(1: Scanner scanner)
      throws (1: ClientException e)
  CellsSerialized next_cells_serialized(1: Scanner scanner)
      throws (1: ClientException e)
  list<Cell> scanner_get_row(1: Scanner scanner)
      throws (1: ClientException e)
  list<Cell> next_row(1: Scanner scanner) throws (1: ClientException e)
  list<CellAsArray> scanner_get_row_as_arrays(1: Scanner scanner)
      throws (1: ClientException e)
  list<CellAsArray> next_row_as_arrays(1: Scanner scanner)
      throws (1: ClientException e)
  CellsSerialized scanner_get_row_serialized(1: Scanner scanner)
      throws (1: ClientException e)
  CellsSerialized next_row_serialized(1: Scanner scanner)
      throws (1: ClientException e)
  void scanner_close(1: Scanner scanner) throws (1: ClientException e)
  void close_scanner(1: Scanner scanner) throws (1: ClientException e)

  // ---- futures and asynchronous scanners (timeout_millis in milliseconds)
  Future future_open(1: i32 capacity = 0) throws (1: ClientException e)
  Future open_future(1: i32 capacity = 0) throws (1: ClientException e)
  Result future_get_result(1: Future ff, 2: i32 timeout_millis = 0)
      throws (1: ClientException e)
  Result get_future_result(1: Future ff, 2: i32 timeout_millis = 0)
      throws (1: ClientException e)
  ResultAsArrays future_get_result_as_arrays(1: Future ff,
                                             2: i32 timeout_millis = 0)
      throws (1: ClientException e)
  ResultAsArrays get_future_result_as_arrays(1: Future ff,
                                             2: i32 timeout_millis = 0)
      throws (1: ClientException e)
  ResultSerialized future_get_result_serialized(1: Future ff,
                                                2: i32 timeout_millis = 0)
      throws (1: ClientException e)
  ResultSerialized get_future_result_serialized(1: Future ff,
                                                2: i32 timeout_millis = 0)
      throws (1: ClientException e)
  void future_cancel(1: Future ff) throws (1: ClientException e)
  void cancel_future(1: Future ff) throws (1: ClientException e)
  bool future_is_empty(1: Future ff) throws (1: ClientException e)
  bool future_is_full(1: Future ff) throws (1: ClientException e)
  bool future_is_cancelled(1: Future ff) throws (1: ClientException e)
  bool future_has_outstanding(1: Future ff) throws (1: ClientException e)
  void future_close(1: Future ff) throws (1: ClientException e)
  void close_future(1: Future ff) throws (1: ClientException e)
  ScannerAsync async_scanner_open(1: Namespace ns, 2: string table_name,
                                  3: Future future, 4: ScanSpec scan_spec)
      throws (1: ClientException e)
  ScannerAsync open_scanner_async(1: Namespace ns, 2: string table_name,
                                  3: Future future, 4: ScanSpec scan_spec)
      throws (1: ClientException e)
  void async_scanner_cancel(1: ScannerAsync scanner)
      throws (1: ClientException e)
  void cancel_scanner_async(1: ScannerAsync scanner)
      throws (1: ClientException e)
  void async_scanner_close(1: ScannerAsync scanner)
      throws (1: ClientException e)
  void close_scanner_async(1: ScannerAsync scanner)
      throws (1: ClientException e)

  // ---- mutators (flush_interval in milliseconds; 0 = no periodic flush)
  Mutator mutator_open(1: Namespace ns, 2: string table_name,
                       3: i32 flags = 0, 4: i32 flush_interval = 0)
      throws (1: ClientException e)
  Mutator open_mutator(1: Namespace ns, 2: string table_name,
                       3: i32 flags = 0, 4: i32 flush_interval = 0)
      throws (1: ClientException e)
  void mutator_set_cell(1: Mutator mutator, 2: Cell cell)
      throws (1: ClientException e)
  void mutator_set_cells(1: Mutator mutator, 2: list<Cell> cells)
      throws (1: ClientException e)
  void mutator_set_cell_as_array(1: Mutator mutator, 2: CellAsArray cell)
      throws (1: ClientException e)
  void mutator_set_cells_as_arrays(1: Mutator mutator,
                                   2: list<CellAsArray> cells)
      throws (1: ClientException e)
  void mutator_set_cells_serialized(1: Mutator mutator,
                                    2: CellsSerialized cells,
                                    3: bool flush = false)
      throws (1: ClientException e)
  void mutator_flush(1: Mutator mutator) throws (1: ClientException e)
  void flush_mutator(1: Mutator mutator) throws (1: ClientException e)
  void mutator_close(1: Mutator mutator) throws (1: ClientException e)
  void close_mutator(1: Mutator mutator) throws (1: ClientException e)

  // ---- asynchronous mutators
  MutatorAsync async_mutator_open(1: Namespace ns, 2: string table_name,
                                  3: Future future, 4: i32 flags = 0)
      throws (1: ClientException e)
  MutatorAsync open_mutator_async(1: Namespace ns, 2: string table_name,
                                  3: Future future, 4: i32 flags = 0)
      throws (1: ClientException e)
  void async_mutator_set_cell(1: MutatorAsync mutator, 2: Cell cell)
      throws (1: ClientException e)
  void set_cell_async(1: MutatorAsync mutator, 2: Cell cell)
      throws (1: ClientException e)
  void async_mutator_set_cell_as_array(1: MutatorAsync mutator,
                                       2: CellAsArray cell)
      throws (1: ClientException e)
  void set_cell_as_array_async(1: MutatorAsync mutator, 2: CellAsArray cell)
      throws (1: ClientException e)
  void async_mutator_set_cells(1: MutatorAsync mutator, 2: list<Cell> cells)
      throws (1: ClientException e)
  void set_cells_async(1: MutatorAsync mutator, 2: list<Cell> cells)
      throws (1: ClientException e)
  void async_mutator_set_cells_as_arrays(1: MutatorAsync mutator,
                                         2: list<CellAsArray> cells)
      throws (1: ClientException e)
  void set_cells_as_arrays_async(1: MutatorAsync mutator,
                                 2: list<CellAsArray> cells)
      throws (1: ClientException e)
  void async_mutator_set_cells_serialized(1: MutatorAsync mutator,
                                          2: CellsSerialized cells,
                                          3: bool flush = false)
      throws (1: ClientException e)
  void set_cells_serialized_async(1: MutatorAsync mutator,
                                  2: CellsSerialized cells,
                                  3: bool flush = false)
      throws (1: ClientException e)
  void async_mutator_flush(1: MutatorAsync mutator)
      throws (1: ClientException e)
  void flush_mutator_async(1: MutatorAsync mutator)
      throws (1: ClientException e)
  void async_mutator_cancel(1: MutatorAsync mutator)
      throws (1: ClientException e)
  void cancel_mutator_async(1: MutatorAsync mutator)
      throws (1: ClientException e)
  void async_mutator_close(1: MutatorAsync mutator)
      throws (1: ClientException e)
  void close_mutator_async(1: MutatorAsync mutator)
      throws (1: ClientException e)

  // ---- shared mutators (broker-global; no durability at return)
  void shared_mutator_refresh(1: Namespace ns, 2: string table_name,
                              3: MutateSpec mutate_spec)
      throws (1: ClientException e)
  void refresh_shared_mutator(1: Namespace ns, 2: string table_name,
                              3: MutateSpec mutate_spec)
      throws (1: ClientException e)
  void shared_mutator_set_cells(1: Namespace ns, 2: string table_name,
                                3: MutateSpec mutate_spec, 4: list<Cell> cells)
      throws (1: ClientException e)
  void offer_cells(1: Namespace ns, 2: string table_name,
                   3: MutateSpec mutate_spec, 4: list<Cell> cells)
      throws (1: ClientException e)
  void shared_mutator_set_cell(1: Namespace ns, 2: string table_name,
                               3: MutateSpec mutate_spec, 4: Cell cell)
      throws (1: ClientException e)
  void offer_cell(1: Namespace ns, 2: string table_name,
                  3: MutateSpec mutate_spec, 4: Cell cell)
      throws (1: ClientException e)
  void shared_mutator_set_cells_as_arrays(1: Namespace ns,
                                          2: string table_name,
                                          3: MutateSpec mutate_spec,
                                          4: list<CellAsArray> cells)
      throws (1: ClientException e)
  void offer_cells_as_arrays(1: Namespace ns, 2: string table_name,
                             3: MutateSpec mutate_spec,
                             4: list<CellAsArray> cells)
      throws (1: ClientException e)
  void shared_mutator_set_cell_as_array(1: Namespace ns, 2: string table_name,
                                        3: MutateSpec mutate_spec,
                                        4: CellAsArray cell)
      throws (1: ClientException e)
  void offer_cell_as_array(1: Namespace ns, 2: string table_name,
                           3: MutateSpec mutate_spec, 4: CellAsArray cell)
      throws (1: ClientException e)

  // ---- status and misc
  Status status() throws (1: ClientException e)
  string error_get_text(1: i32 error_code)
  string generate_guid()
  string create_cell_unique(1: Namespace ns, 2: string table_name, 3: Key key,
                            4: string value) throws (1: ClientException e)
  void shutdown() throws (1: ClientException e)
}

service HqlService extends ClientService {
  // hql_query*(ns, command) is hql_exec*(ns, command, false, false).
  HqlResult hql_exec(1: Namespace ns, 2: string command,
                     3: bool noflush = false, 4: bool unbuffered = false)
      throws (1: ClientException e)
  HqlResult hql_query(1: Namespace ns, 2: string command)
      throws (1: ClientException e)
  HqlResult2 hql_exec2(1: Namespace ns, 2: string command,
                       3: bool noflush = false, 4: bool unbuffered = false)
      throws (1: ClientException e)
  HqlResult2 hql_query2(1: Namespace ns, 2: string command)
      throws (1: ClientException e)
  HqlResultAsArrays hql_exec_as_arrays(1: Namespace ns, 2: string command,
                                       3: bool noflush = false,
                                       4: bool unbuffered = false)
      throws (1: ClientException e)
  HqlResultAsArrays hql_query_as_arrays(1: Namespace ns, 2: string command)
      throws (1: ClientException e)
}
