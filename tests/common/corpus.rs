//! The command corpus of acceptance 1, shared by `tests/corpus.rs`
//! (standalone: byte-identical through respite) and `tests/cluster_proxy.rs`
//! (cluster mode: identical except where Redis Cluster answers CROSSSLOT).
//!
//! Deterministic: fixed keys and values, explicit stream IDs, nothing that
//! depends on time, randomness or connection identity.

use super::escape;

/// One command of the corpus.
pub struct Entry {
    pub section: &'static str,
    pub args: Vec<Vec<u8>>,
    /// Redis answers this command with an error reply (checked against
    /// Redis itself in the self test, so the corpus cannot silently rot).
    pub expect_err: bool,
}

#[derive(Default)]
pub struct Corpus {
    section: &'static str,
    pub entries: Vec<Entry>,
}

impl Corpus {
    fn section(&mut self, name: &'static str) {
        self.section = name;
    }

    fn push(&mut self, args: Vec<Vec<u8>>, expect_err: bool) {
        self.entries.push(Entry {
            section: self.section,
            args,
            expect_err,
        });
    }

    /// A command written as whitespace-separated words that succeeds.
    fn ok(&mut self, line: &str) {
        self.push(words(line), false);
    }

    /// A command written as whitespace-separated words that Redis rejects.
    fn err(&mut self, line: &str) {
        self.push(words(line), true);
    }

    /// A command whose arguments may contain spaces or binary bytes.
    fn ok_args(&mut self, args: &[&[u8]]) {
        self.push(args.iter().map(|a| a.to_vec()).collect(), false);
    }

    fn err_args(&mut self, args: &[&[u8]]) {
        self.push(args.iter().map(|a| a.to_vec()).collect(), true);
    }
}

fn words(line: &str) -> Vec<Vec<u8>> {
    line.split_whitespace()
        .map(|w| w.as_bytes().to_vec())
        .collect()
}

/// A compressible value larger than respite's default compression threshold
/// (1024 bytes), so the corpus also checks that compression is invisible.
fn big_value(tag: &str) -> Vec<u8> {
    let mut v = Vec::new();
    let mut i = 0u32;
    while v.len() < 2000 {
        v.extend_from_slice(format!("{tag}-{i:05}|abcdefghij|").as_bytes());
        i += 1;
    }
    v.truncate(2000);
    v
}

pub fn build_corpus() -> Corpus {
    let mut c = Corpus::default();

    // Keyspace order depends on the main dict's layout. Right after FLUSHALL
    // the dict is empty; with at most 4 keys it never resizes or rehashes,
    // so KEYS and SCAN order (and cursors 0 -> 2 -> 1 -> 3 over 4 buckets)
    // is fixed for a given server process.
    c.section("keyspace-order");
    c.ok("SET ks:a 1");
    c.ok("SET ks:b 2");
    c.ok("SET ks:c 3");
    c.ok("RPUSH ks:list x y");
    c.ok("KEYS *");
    c.ok("KEYS ks:?");
    c.ok("KEYS nomatch*");
    c.ok("SCAN 0");
    c.ok("SCAN 0 COUNT 1");
    c.ok("SCAN 2 COUNT 1");
    c.ok("SCAN 1 COUNT 1");
    c.ok("SCAN 3 COUNT 1");
    c.ok("SCAN 0 MATCH ks:? COUNT 10");
    c.ok("SCAN 0 TYPE list");
    c.ok("DBSIZE");
    c.ok("EXISTS ks:a ks:b nope ks:a");
    c.ok("DEL ks:a ks:b ks:c ks:list nope");
    c.ok("DBSIZE");

    c.section("strings");
    c.ok("SET s:1 hello");
    c.ok("GET s:1");
    c.ok("SET s:1 world GET");
    c.ok("SET s:1 x NX");
    c.ok("SET s:new y NX");
    c.ok("SET s:none z XX");
    c.ok("GET s:none");
    c.ok("SET s:1 v2 XX");
    c.ok("SET s:ttl v EX 100");
    c.ok("TTL s:ttl");
    c.ok("SET s:ttl v2 KEEPTTL");
    c.ok("TTL s:ttl");
    c.ok("SET s:ttl v3");
    c.ok("TTL s:ttl");
    c.ok("SET s:ttl v4 NX GET");
    c.ok("GET s:missing");
    c.ok("APPEND s:1 -suffix");
    c.ok("APPEND s:app start");
    c.ok("STRLEN s:1");
    c.ok("STRLEN s:missing");
    c.ok("GETRANGE s:1 0 3");
    c.ok("GETRANGE s:1 -3 -1");
    c.ok("GETRANGE s:1 100 200");
    c.ok("SUBSTR s:1 0 2");
    c.ok("SETRANGE s:1 2 ZZ");
    c.ok("GET s:1");
    c.ok("SETRANGE s:pad 3 x");
    c.ok_args(&[b"GET", b"s:pad"]);
    c.ok("MSET s:a 1 s:b 2 s:c 3");
    c.ok("MGET s:a s:b s:missing s:c");
    c.ok("MSETNX s:a 9 s:z 9");
    c.ok("MSETNX s:y 1 s:z 2");
    c.ok("MGET s:y s:z");
    c.ok("INCR s:n");
    c.ok("INCRBY s:n 41");
    c.ok("DECR s:n");
    c.ok("DECRBY s:n 10");
    c.ok("INCRBY s:n -100");
    c.ok("GET s:n");
    c.ok("INCRBYFLOAT s:f 1.5");
    c.ok("INCRBYFLOAT s:f 0.1");
    c.ok("INCRBYFLOAT s:f -5e3");
    c.ok("INCRBYFLOAT s:f 3.0e-2");
    c.ok("GET s:f");
    c.ok("SETNX s:nx 1");
    c.ok("SETNX s:nx 2");
    c.ok("GETSET s:nx 3");
    c.ok("GETDEL s:nx");
    c.ok("GETDEL s:nx");
    c.ok("SETEX s:ex 50 v");
    c.ok("TTL s:ex");
    c.ok("PSETEX s:px 100000 v");
    c.ok("TTL s:px");
    c.ok("GETEX s:1 EX 200");
    c.ok("TTL s:1");
    c.ok("GETEX s:1 PERSIST");
    c.ok("TTL s:1");
    c.ok("GETEX s:missing EX 10");
    c.ok("SET s:l1 ohmytext");
    c.ok("SET s:l2 mynewtext");
    c.ok("LCS s:l1 s:l2");
    c.ok("LCS s:l1 s:l2 LEN");
    c.ok("LCS s:l1 s:l2 IDX MINMATCHLEN 2 WITHMATCHLEN");
    c.ok_args(&[b"SET", b"s:bin", b"a\r\nb\x00c\xffd"]);
    c.ok_args(&[b"GET", b"s:bin"]);
    c.ok_args(&[b"STRLEN", b"s:bin"]);
    c.ok_args(&[b"SET", b"s:empty", b""]);
    c.ok("GET s:empty");
    c.ok("STRLEN s:empty");
    c.ok_args(&[b"SET", b"s:spaces", b"hello world  with spaces"]);
    c.ok("GET s:spaces");
    c.ok("SET s:int 12345");
    c.ok("SET s:emb short");
    c.ok("OBJECT ENCODING s:int");
    c.ok("OBJECT ENCODING s:emb");
    c.ok("OBJECT ENCODING s:1");
    let big = big_value("big");
    c.ok_args(&[b"SET", b"s:big", &big]);
    c.ok("GET s:big");
    c.ok("STRLEN s:big");
    c.ok("GETRANGE s:big 100 140");
    c.ok("MGET s:big s:a s:missing");
    let big2 = big_value("other");
    c.ok_args(&[b"SET", b"s:big", &big2, b"GET"]);
    c.ok("GETDEL s:big");
    c.ok("EXISTS s:big");
    c.ok("SETBIT s:bits 7 1");
    c.ok("SETBIT s:bits 13 1");
    c.ok("GETBIT s:bits 7");
    c.ok("GETBIT s:bits 8");
    c.ok("BITCOUNT s:bits");
    c.ok("BITPOS s:bits 1");
    c.ok("SET s:bits2 abc");
    c.ok("BITOP AND s:bitsand s:bits s:bits2");
    c.ok("GET s:bitsand");

    c.section("hashes");
    c.ok("HSET h:1 f1 v1 f2 v2");
    c.ok("HSET h:1 f1 v1b f3 v3");
    c.ok("HGET h:1 f1");
    c.ok("HGET h:1 nope");
    c.ok("HMGET h:1 f1 nope f2");
    c.ok("HGETALL h:1");
    c.ok("HKEYS h:1");
    c.ok("HVALS h:1");
    c.ok("HLEN h:1");
    c.ok("HEXISTS h:1 f2");
    c.ok("HEXISTS h:1 zz");
    c.ok("HDEL h:1 f2 nope");
    c.ok("HINCRBY h:1 n 5");
    c.ok("HINCRBY h:1 n -7");
    c.ok("HINCRBYFLOAT h:1 fl 2.5");
    c.ok("HINCRBYFLOAT h:1 fl 0.25");
    c.ok("HSETNX h:1 f1 x");
    c.ok("HSETNX h:1 f9 x");
    c.ok("HSTRLEN h:1 f1");
    c.ok("HMSET h:1 a 1 b 2");
    c.ok("HSCAN h:1 0");
    c.ok("HSCAN h:1 0 MATCH f*");
    // A count at least the hash's size returns the whole hash in its own
    // order: no randomness involved.
    c.ok("HRANDFIELD h:1 100");
    c.ok("HRANDFIELD h:1 100 WITHVALUES");
    c.ok("OBJECT ENCODING h:1");
    c.ok("HGETALL h:missing");
    c.ok("HGET h:missing f");
    c.ok("HLEN h:missing");
    let hbig = big_value("hash");
    c.ok_args(&[b"HSET", b"h:big", b"field", &hbig, b"small", b"x"]);
    c.ok("HGET h:big field");
    c.ok("HMGET h:big small field");
    c.ok("HGETALL h:big");
    c.ok("HSTRLEN h:big field");
    let mut hlarge: Vec<Vec<u8>> = vec![b"HSET".to_vec(), b"h:large".to_vec()];
    for i in 0..130 {
        hlarge.push(format!("field{i}").into_bytes());
        hlarge.push(format!("value{i}").into_bytes());
    }
    c.push(hlarge, false);
    c.ok("OBJECT ENCODING h:large");
    c.ok("HLEN h:large");
    c.ok("HGET h:large field77");

    c.section("lists");
    c.ok("RPUSH l:1 a b c");
    c.ok("LPUSH l:1 z");
    c.ok("LRANGE l:1 0 -1");
    c.ok("LRANGE l:1 1 1");
    c.ok("LRANGE l:1 5 10");
    c.ok("LLEN l:1");
    c.ok("LINDEX l:1 1");
    c.ok("LINDEX l:1 99");
    c.ok("LPOP l:1");
    c.ok("RPOP l:1");
    c.ok("LPOP l:1 2");
    c.ok("LPOP l:1");
    c.ok("LPOP l:none");
    c.ok("LPOP l:none 2");
    c.ok("RPUSH l:2 1 2 3 3 4 5");
    c.ok("LREM l:2 1 3");
    c.ok("LSET l:2 0 X");
    c.ok("LINSERT l:2 BEFORE X W");
    c.ok("LINSERT l:2 AFTER nope Y");
    c.ok("LRANGE l:2 0 -1");
    c.ok("LTRIM l:2 0 3");
    c.ok("LRANGE l:2 0 -1");
    c.ok("LPOS l:2 X");
    c.ok("LPOS l:2 nope");
    c.ok("RPOPLPUSH l:2 l:3");
    c.ok("LMOVE l:2 l:3 LEFT RIGHT");
    c.ok("LRANGE l:3 0 -1");
    c.ok("LMPOP 2 l:none l:3 LEFT COUNT 1");
    c.ok("LMPOP 1 l:none RIGHT");
    // Data is there, so the blocking pop answers at once.
    c.ok("BLPOP l:none l:3 1");
    c.ok("LPUSHX l:none x");
    c.ok("RPUSHX l:2 tail");
    c.ok("LRANGE l:2 -2 -1");
    c.ok("OBJECT ENCODING l:2");

    c.section("sets");
    c.ok("SADD st:1 a b c d");
    c.ok("SADD st:1 a");
    c.ok("SCARD st:1");
    c.ok("SISMEMBER st:1 a");
    c.ok("SISMEMBER st:1 x");
    c.ok("SMISMEMBER st:1 a x c");
    c.ok("SMEMBERS st:1");
    c.ok("SREM st:1 d nope");
    c.ok("SADD st:2 b c e");
    c.ok("SINTER st:1 st:2");
    c.ok("SUNION st:1 st:2");
    c.ok("SDIFF st:1 st:2");
    c.ok("SINTERCARD 2 st:1 st:2");
    c.ok("SINTERSTORE st:i st:1 st:2");
    c.ok("SMEMBERS st:i");
    c.ok("SMOVE st:1 st:2 a");
    c.ok("SMOVE st:1 st:2 nope");
    c.ok("SADD st:int 3 1 2 100 -5");
    c.ok("SMEMBERS st:int");
    c.ok("SSCAN st:int 0");
    // Count above the set's size: the whole set, no randomness.
    c.ok("SRANDMEMBER st:int 100");
    c.ok("OBJECT ENCODING st:int");
    c.ok("OBJECT ENCODING st:1");
    c.ok("SMEMBERS st:missing");
    c.ok("SCARD st:missing");

    c.section("sorted-sets");
    c.ok("ZADD z:1 1 a 2 b 3 c");
    c.ok("ZADD z:1 1.5 d");
    c.ok("ZADD z:1 inf top -inf bottom");
    c.ok("ZSCORE z:1 d");
    c.ok("ZSCORE z:1 top");
    c.ok("ZSCORE z:1 bottom");
    c.ok("ZSCORE z:1 nope");
    c.ok("ZSCORE z:missing a");
    c.ok("ZRANGE z:1 0 -1");
    c.ok("ZRANGE z:1 0 -1 WITHSCORES");
    c.ok("ZRANGE z:1 (1 3 BYSCORE WITHSCORES");
    c.ok("ZRANGE z:1 +inf -inf BYSCORE REV LIMIT 0 2 WITHSCORES");
    c.ok("ZREVRANGE z:1 0 1 WITHSCORES");
    c.ok("ZRANGEBYSCORE z:1 -inf +inf WITHSCORES LIMIT 1 2");
    c.ok("ZREVRANGEBYSCORE z:1 3 1");
    c.ok("ZRANK z:1 c");
    c.ok("ZREVRANK z:1 c");
    c.ok("ZRANK z:1 nope");
    c.ok("ZCARD z:1");
    c.ok("ZCOUNT z:1 1 2");
    c.ok("ZINCRBY z:1 2.5 a");
    c.ok("ZMSCORE z:1 a nope d");
    c.ok("ZADD z:1 INCR 1 a");
    c.ok("ZADD z:1 XX CH GT 10 b 0 c");
    c.ok("ZADD z:1 NX 5 b");
    c.ok("ZREM z:1 top nope");
    c.ok("ZPOPMIN z:1");
    c.ok("ZPOPMAX z:1 2");
    c.ok("ZRANGE z:1 0 -1 WITHSCORES");
    c.ok("ZADD z:lex 0 a 0 b 0 c 0 d");
    c.ok("ZRANGEBYLEX z:lex [b (d");
    c.ok("ZRANGE z:lex - + BYLEX LIMIT 1 2");
    c.ok("ZLEXCOUNT z:lex - +");
    c.ok("ZUNIONSTORE z:u 2 z:1 z:lex WEIGHTS 2 1");
    c.ok("ZRANGE z:u 0 -1 WITHSCORES");
    c.ok("ZINTER 2 z:1 z:lex WITHSCORES");
    c.ok("ZUNION 2 z:1 z:lex AGGREGATE MAX WITHSCORES");
    c.ok("ZDIFF 2 z:lex z:1");
    c.ok("ZRANGESTORE z:dst z:lex 0 1");
    c.ok("ZRANGE z:dst 0 -1");
    c.ok("ZADD z:f 0.1 x");
    c.ok("ZINCRBY z:f 0.2 x");
    c.ok("ZSCORE z:f x");
    c.ok("ZADD z:f -0.5 y 1e20 w");
    c.ok("ZRANGE z:f 0 -1 WITHSCORES");
    c.ok("ZMPOP 1 z:f MIN");
    c.ok("ZMPOP 2 z:none z:f MAX COUNT 5");
    c.ok("ZMPOP 1 z:none MIN");
    // Data is there, so the blocking pop answers at once.
    c.ok("BZPOPMIN z:lex 1");
    c.ok("OBJECT ENCODING z:lex");

    c.section("streams");
    c.ok("XADD x:1 1-1 f v");
    c.ok("XADD x:1 1-2 f v2");
    c.ok("XADD x:1 2-0 a 1 b 2");
    c.ok("XADD x:1 5-* g 1");
    c.ok("XLEN x:1");
    c.ok("XRANGE x:1 - +");
    c.ok("XRANGE x:1 - + COUNT 1");
    c.ok("XRANGE x:1 (1-1 2-0");
    c.ok("XREVRANGE x:1 + -");
    c.ok("XREAD COUNT 2 STREAMS x:1 0-0");
    c.ok("XREAD STREAMS x:1 x:none 1-2 0");
    c.ok("XDEL x:1 1-2 9-9");
    c.ok("XLEN x:1");
    c.ok("XGROUP CREATE x:1 g1 0");
    c.ok("XREADGROUP GROUP g1 c1 COUNT 10 STREAMS x:1 >");
    c.ok("XREADGROUP GROUP g1 c1 STREAMS x:1 >");
    c.ok("XPENDING x:1 g1");
    c.ok("XACK x:1 g1 2-0 9-9");
    c.ok("XPENDING x:1 g1");
    c.ok("XTRIM x:1 MAXLEN 1");
    c.ok("XRANGE x:1 - +");
    c.ok("XADD x:none NOMKSTREAM 5-0 f v");
    c.ok("XADD x:2 MAXLEN 2 1-0 a 1");
    c.ok("XADD x:2 MAXLEN 2 2-0 a 2");
    c.ok("XADD x:2 MAXLEN 2 3-0 a 3");
    c.ok("XRANGE x:2 - +");
    c.ok("XGROUP DESTROY x:1 g1");
    c.ok("TYPE x:1");

    c.section("expiry");
    c.ok("SET e:1 v");
    c.ok("EXPIRE e:1 1000");
    c.ok("TTL e:1");
    c.ok("PERSIST e:1");
    c.ok("PERSIST e:1");
    c.ok("TTL e:1");
    c.ok("TTL e:none");
    c.ok("PTTL e:none");
    c.ok("EXPIREAT e:1 4000000000");
    c.ok("EXPIRETIME e:1");
    c.ok("PEXPIRETIME e:1");
    c.ok("PEXPIREAT e:1 4000000001000");
    c.ok("EXPIRETIME e:1");
    c.ok("EXPIRE e:1 100 NX");
    c.ok("EXPIRE e:1 100 GT");
    c.ok("EXPIRE e:none 10");
    c.ok("EXPIRETIME e:none");
    c.ok("SET e:gone v EXAT 1");
    c.ok("GET e:gone");
    c.ok("EXISTS e:gone");
    c.ok("SET e:2 v PX 5000000");
    c.ok("TTL e:2");

    c.section("keyspace");
    c.ok("TYPE s:1");
    c.ok("TYPE h:1");
    c.ok("TYPE l:2");
    c.ok("TYPE st:1");
    c.ok("TYPE z:lex");
    c.ok("TYPE nope");
    c.ok("SET k:src value");
    c.ok("RENAME k:src k:renamed");
    c.ok("GET k:src");
    c.ok("GET k:renamed");
    c.ok("RENAMENX k:renamed s:1");
    c.ok("COPY k:renamed k:copy");
    c.ok("COPY k:renamed k:copy");
    c.ok("COPY s:1 k:copy REPLACE");
    c.ok("GET k:copy");
    c.ok("EXISTS k:copy k:renamed nope k:copy");
    c.ok("TOUCH k:copy nope");
    c.ok("DEL k:copy nope");
    c.ok("UNLINK k:renamed");
    c.ok("EXISTS k:renamed");
    c.ok("RPUSH so:l 3 1 2");
    c.ok("SORT so:l");
    c.ok("SORT so:l DESC");
    c.ok("SORT so:l LIMIT 0 2");
    c.ok("RPUSH so:a c a b");
    c.ok("SORT so:a ALPHA");
    c.ok("SORT so:a ALPHA DESC LIMIT 1 5");
    c.ok("MSET w_1 30 w_2 10 w_3 20 n_1 one n_2 two n_3 three");
    c.ok("SORT so:l BY w_*");
    c.ok("SORT so:l BY w_* GET # GET n_*");
    c.ok("SORT so:l BY nosort GET n_*");
    c.ok("SORT so:l STORE so:out");
    c.ok("LRANGE so:out 0 -1");
    c.ok("SORT_RO so:l DESC");
    c.ok("SORT nope");
    c.ok("OBJECT ENCODING nope");

    c.section("scripting");
    let script: &[u8] = b"return 'hello from script'";
    c.ok_args(&[b"SCRIPT", b"LOAD", script]);
    let sha = sha1_hex(script);
    c.ok_args(&[b"EVALSHA", sha.as_bytes(), b"0"]);
    c.ok_args(&[
        b"SCRIPT",
        b"EXISTS",
        sha.as_bytes(),
        b"ffffffffffffffffffffffffffffffffffffffff",
    ]);
    c.ok_args(&[b"EVAL", b"return 1", b"0"]);
    c.ok_args(&[b"EVAL", b"return {1, 2, {3, 'four'}, -5}", b"0"]);
    c.ok_args(&[
        b"EVAL",
        b"return redis.call('SET', KEYS[1], ARGV[1])",
        b"1",
        b"sc:k",
        b"scripted",
    ]);
    c.ok_args(&[b"EVAL", b"return redis.call('GET', KEYS[1])", b"1", b"sc:k"]);
    c.ok_args(&[
        b"EVAL_RO",
        b"return redis.call('STRLEN', KEYS[1])",
        b"1",
        b"sc:k",
    ]);
    c.ok_args(&[
        b"EVAL",
        b"return {KEYS[1], KEYS[2], ARGV[1]}",
        b"2",
        b"a",
        b"b",
        b"c",
    ]);
    c.err_args(&[b"EVAL", b"return redis.error_reply('my error')", b"0"]);
    c.ok_args(&[b"EVAL", b"return redis.status_reply('FINE')", b"0"]);
    c.ok_args(&[b"EVAL", b"return 3.99", b"0"]);
    c.ok_args(&[b"EVAL", b"return nil", b"0"]);
    c.ok_args(&[b"EVAL", b"return true", b"0"]);
    c.ok_args(&[b"EVAL", b"return false", b"0"]);
    c.ok_args(&[b"EVAL", b"return {double=3.25}", b"0"]);
    c.ok_args(&[b"EVAL", b"return {map={field='value'}}", b"0"]);
    c.ok_args(&[b"EVAL", b"return {set={member=true}}", b"0"]);
    c.ok_args(&[
        b"EVAL",
        b"redis.setresp(3); return redis.call('HGETALL', KEYS[1])",
        b"1",
        b"h:1",
    ]);
    c.ok_args(&[
        b"EVAL",
        b"redis.setresp(3); redis.call('ZADD', KEYS[1], 2.5, ARGV[1]); return redis.call('ZSCORE', KEYS[1], ARGV[1])",
        b"1",
        b"sc:z",
        b"m",
    ]);
    c.err_args(&[
        b"EVAL",
        b"return redis.call('INCR', KEYS[1])",
        b"1",
        b"sc:k",
    ]);
    c.err_args(&[b"EVAL", b"this is not lua", b"0"]);
    c.err_args(&[b"EVAL", b"return 1", b"5", b"a"]);
    c.err_args(&[
        b"EVALSHA",
        b"ffffffffffffffffffffffffffffffffffffffff",
        b"0",
    ]);
    c.ok_args(&[
        b"FUNCTION",
        b"LOAD",
        b"#!lua name=corpuslib\nredis.register_function('corpus_echo', function(keys, args) return args[1] end)",
    ]);
    c.ok("FCALL corpus_echo 0 hi");
    c.err("FCALL no_such_function 0");
    c.ok("FUNCTION DELETE corpuslib");
    c.err("FCALL corpus_echo 0 hi");

    c.section("errors");
    c.err("LPUSH s:1 x");
    c.err("GET l:2");
    c.err("HGET s:1 f");
    c.err("SADD h:1 x");
    c.err("ZADD l:2 1 x");
    c.err("XADD s:1 9-9 f v");
    c.err("INCR s:1");
    c.err("INCR s:f");
    c.err("INCRBYFLOAT s:1 1");
    c.err("HINCRBY h:1 f1 1");
    c.err("GET");
    c.err("SET k");
    c.err("HSET h:1");
    c.err("HSET h:1 f");
    c.err("LPUSH l:2");
    c.err("ZADD z:1 1");
    c.err("EXPIRE k");
    c.err("ECHO");
    c.err("PING a b");
    c.err("FOOBAR");
    c.err("FOOBAR a b");
    c.err_args(&[b"NOTACOMMAND", b"with spaces", b"'quoted'"]);
    c.err("OBJECT FOO");
    c.err("SCRIPT FOO");
    c.err("XGROUP FOO");
    c.err("SET k v EX");
    c.err("SET k v EX abc");
    c.err("SET k v EX -1");
    c.err("SET k v NX XX");
    c.err("SET k v BADOPT");
    c.err("ZADD z:1 nan a");
    c.err("ZADD z:1 NX XX 1 a");
    c.err("LRANGE l:2 a b");
    c.err("INCRBY s:n 1.5");
    c.err("XADD x:1 bad-id f v");
    c.err("XADD x:1 0-0 f v");
    c.err("SCAN abc");
    c.err("EXPIRE e:1 1 XX NX");
    c.err("BITCOUNT s:bits 1");
    c.err("SORT so:a");
    c.err("SORT so:l BY");
    c.err("LSET l:2 99 x");
    c.err("LSET l:none 0 x");
    c.err("RENAME nope other");
    c.err("ZRANGE z:1 0 -1 BYLEX");
    c.err("HINCRBYFLOAT h:1 f1 1");
    c.err("SELECT 99999");
    c.err("SELECT abc");

    c.section("server");
    c.ok("PING");
    c.ok("PING hello");
    c.ok_args(&[b"ECHO", b"hello world"]);
    c.ok_args(&[b"ECHO", b"\x00\xff\r\n"]);
    c.ok_args(&[b"ECHO", b""]);
    c.ok("SELECT 0");
    c.ok("DBSIZE");
    c.ok("EXISTS s:1 h:1 l:2 st:1 z:lex x:1 nope");
    c.ok("TYPE s:int");
    c.ok("ping");
    c.ok("get s:int");
    c.ok("GeT s:int");
    c.ok("DEL s:int s:emb s:int");
    c.ok("DBSIZE");

    c
}

/// SHA-1 as lowercase hex, for EVALSHA (Redis names scripts by SHA-1).
pub fn sha1_hex(data: &[u8]) -> String {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64) * 8;
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

/// A command for messages, arguments escaped.
pub fn show_cmd(args: &[Vec<u8>]) -> String {
    args.iter().map(|a| escape(a)).collect::<Vec<_>>().join(" ")
}
