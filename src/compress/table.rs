//! Where a request carries values: the write commands whose value
//! arguments are compressed, the read commands whose replies are restored,
//! and the commands that look at a value's bytes. Which command is which is
//! the command table's [`Compress`] class; this reads the arguments.

pub use crate::command::table::Compress;

/// Where a write command's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// One value at this argument index; the key is argument 1.
    At(usize),
    /// `MSET key value [key value ...]`.
    KeyValuePairs,
    /// `HSET key field value [field value ...]`: values of one key.
    FieldValuePairs,
}

/// Where a reply carries values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The reply is one bulk string (`GET`, `HGET`, `SET ... GET`).
    Bulk,
    /// An array of bulk strings (`MGET`, `HMGET`, `HVALS`).
    Array,
    /// Field/value pairs: a RESP2 flat array, a RESP3 map, or a RESP3 array of
    /// two-element arrays (`HGETALL`, `HRANDFIELD ... WITHVALUES`).
    Pairs,
}

/// A command the byte-level emulation answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteCmd {
    /// Changes the value (needs an atomic read-modify-write).
    pub writer: bool,
    /// Argument indices of the string keys whose values the command reads.
    pub keys: Vec<usize>,
    /// Argument index of the key the command writes.
    pub dest: Option<usize>,
    /// The write keeps the key's TTL (everything but `BITOP`, which replaces
    /// its destination as `SET` would).
    pub keep_ttl: bool,
    /// `HSTRLEN key field`: the length of one hash field's value.
    pub hash_field: bool,
}

/// What compression does with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Values to compress, and the reply shape to restore (`SET ... GET`, `GETSET`).
    Write(Values, Option<Shape>),
    /// A reply to restore; `per_key`: element i belongs to argument 1 + i (`MGET`).
    Read {
        shape: Shape,
        per_key: bool,
    },
    Byte(ByteCmd),
}

/// The role of a request of compression class `class`, from its
/// arguments; `None` for every other command. Malformed requests (wrong
/// arity) get `None` too: Redis words their errors.
pub fn role<'a>(class: Compress, args: &dyn Fn(usize) -> Option<&'a [u8]>) -> Option<Role> {
    if class == Compress::None {
        return None;
    }
    let argc = (0..).take_while(|&i| args(i).is_some()).count();
    let read = |shape, per_key| Some(Role::Read { shape, per_key });
    let reader = |keys: Vec<usize>| {
        Some(Role::Byte(ByteCmd {
            writer: false,
            keys,
            dest: None,
            keep_ttl: false,
            hash_field: false,
        }))
    };
    let writer = |keys: Vec<usize>, dest, keep_ttl| {
        Some(Role::Byte(ByteCmd {
            writer: true,
            keys,
            dest: Some(dest),
            keep_ttl,
            hash_field: false,
        }))
    };
    match class {
        Compress::None => None,
        Compress::Set if argc >= 3 => {
            let get = (3..argc).any(|i| args(i).is_some_and(|a| a.eq_ignore_ascii_case(b"get")));
            Some(Role::Write(Values::At(2), get.then_some(Shape::Bulk)))
        }
        Compress::SetNx if argc == 3 => Some(Role::Write(Values::At(2), None)),
        Compress::GetSet if argc == 3 => Some(Role::Write(Values::At(2), Some(Shape::Bulk))),
        Compress::SetEx if argc == 4 => Some(Role::Write(Values::At(3), None)),
        Compress::MSet if argc >= 3 && argc % 2 == 1 => {
            Some(Role::Write(Values::KeyValuePairs, None))
        }
        Compress::HSet if argc >= 4 && argc % 2 == 0 => {
            Some(Role::Write(Values::FieldValuePairs, None))
        }
        Compress::HSetNx if argc == 4 => Some(Role::Write(Values::At(3), None)),
        Compress::Get if argc >= 2 => read(Shape::Bulk, false),
        Compress::MGet if argc >= 2 => read(Shape::Array, true),
        Compress::HMGet if argc >= 2 => read(Shape::Array, false),
        Compress::HGetAll if argc == 2 => read(Shape::Pairs, false),
        Compress::HRandField
            if argc == 4 && args(3).is_some_and(|a| a.eq_ignore_ascii_case(b"withvalues")) =>
        {
            read(Shape::Pairs, false)
        }
        Compress::Strlen if argc == 2 => reader(vec![1]),
        Compress::GetRange if argc == 4 => reader(vec![1]),
        Compress::GetBit if argc == 3 => reader(vec![1]),
        Compress::BitRead if argc >= 2 => reader(vec![1]),
        Compress::Lcs if argc >= 3 => reader(vec![1, 2]),
        Compress::HStrlen if argc == 3 => Some(Role::Byte(ByteCmd {
            writer: false,
            keys: vec![1],
            dest: None,
            keep_ttl: false,
            hash_field: true,
        })),
        Compress::Append if argc == 3 => writer(vec![1], 1, true),
        Compress::SetRange if argc == 4 => writer(vec![1], 1, true),
        Compress::SetBit if argc == 4 => writer(vec![1], 1, true),
        Compress::BitField if argc >= 2 => writer(vec![1], 1, true),
        Compress::BitOp if argc >= 4 => writer((3..argc).collect(), 2, false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role_of(args: &[&str]) -> Option<Role> {
        let class = crate::command::classify(args[0].as_bytes()).compress;
        role(class, &|i| args.get(i).map(|a| a.as_bytes()))
    }

    #[test]
    fn roles() {
        assert_eq!(
            role_of(&["SET", "k", "v"]),
            Some(Role::Write(Values::At(2), None))
        );
        assert_eq!(
            role_of(&["set", "k", "v", "EX", "1", "GET"]),
            Some(Role::Write(Values::At(2), Some(Shape::Bulk)))
        );
        assert_eq!(role_of(&["MSET", "a", "1", "b"]), None);
        assert_eq!(
            role_of(&["HRANDFIELD", "h", "3", "withvalues"]),
            Some(Role::Read {
                shape: Shape::Pairs,
                per_key: false
            })
        );
        assert_eq!(role_of(&["HRANDFIELD", "h", "3"]), None);
        assert!(
            matches!(role_of(&["BITOP", "AND", "d", "a", "b"]), Some(Role::Byte(b)) if b.keys == vec![3, 4] && b.dest == Some(2))
        );
        assert_eq!(role_of(&["PING"]), None);
        assert_eq!(role_of(&["averyveryverylongname"]), None);
    }
}
