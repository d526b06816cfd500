// eb::Json on nlohmann-json: the four defects of the hand-written parser it replaced, and the
// limits that stand between a hostile peer and the process.
#include <doctest/doctest.h>

#include <string>

#include "core/json.h"

using eb::Json;

TEST_CASE("json: invalid escapes are refused, not read as a NUL byte") {
  CHECK_THROWS_WITH(Json::parse("\"a\\uZZZZb\""), doctest::Contains("JSON parse error at offset"));
  CHECK_THROWS(Json::parse("\"\\q\""));
  CHECK(Json::parse("\"\\u0041\"").string() == "A");
}

TEST_CASE("json: surrogate pairs become valid UTF-8; lone surrogates are refused") {
  // U+1F600 (grinning face) is the pair D83D DE00; UTF-8 F0 9F 98 80.
  CHECK(Json::parse("\"\\ud83d\\ude00\"").string() == "\xF0\x9F\x98\x80");
  CHECK_THROWS(Json::parse("\"\\ud83d\""));
  CHECK_THROWS(Json::parse("\"\\ude00x\""));
  // And what goes out is what came in.
  CHECK(Json::parse(Json(std::string("\xF0\x9F\x98\x80")).dump()).string() == "\xF0\x9F\x98\x80");
}

TEST_CASE("json: duplicate keys are refused with the key named") {
  CHECK_THROWS_WITH(Json::parse(R"({"a": 1, "a": 2})"), doctest::Contains("duplicate key 'a'"));
  CHECK_THROWS(Json::parse(R"({"x": {"b": 1, "b": 1}})"));
  // The same key in sibling objects is fine.
  CHECK(Json::parse(R"([{"a": 1}, {"a": 2}])").size() == 2);
}

TEST_CASE("json: numbers round-trip exactly") {
  const double pi = 3.141592653589793;
  CHECK(Json::parse(Json(pi).dump()).number() == pi);
  CHECK(Json(pi).dump() == "3.141592653589793");
  const long long big = (1LL << 53) + 1;  // not representable as a double
  CHECK(Json(big).dump() == "9007199254740993");
  CHECK(Json::parse("9007199254740993").integer() == big);
  CHECK(Json::parse(Json(0.1f * 3).dump()).number() == double(0.1f * 3));
  CHECK(Json(3.0).dump() == "3");      // whole numbers print as integers
  CHECK_THROWS(Json::parse("1e400"));  // out of double range
}

TEST_CASE("json: size and depth are bounded; trailing garbage is refused") {
  CHECK_THROWS_WITH(
      Json::parse(std::string(Json::kMaxDepth + 2, '[') + std::string(Json::kMaxDepth + 2, ']')),
      doctest::Contains("nesting too deep"));
  CHECK(Json::parse(std::string(Json::kMaxDepth, '[') + std::string(Json::kMaxDepth, ']'))
            .is_array());
  CHECK_THROWS_WITH(Json::parse(std::string(Json::kMaxBytes + 1, ' ')),
                    doctest::Contains("too large"));
  CHECK_THROWS(Json::parse("{} x"));
  CHECK_THROWS(Json::parse(""));
}
