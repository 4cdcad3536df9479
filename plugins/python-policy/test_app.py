"""Native unit tests of the policy's decision (run by build.sh before it builds the
component): `python3 -m unittest test_app` in a folder holding `app.py`, this file and
the bindings from `componentize-py -d ../../wit -w policy bindings .`."""

import unittest

from app import DEFAULT_MESSAGE, decide, parse_config
from wit_world.imports import types


class DecideTest(unittest.TestCase):
    def test_allows_ordinary_bodies(self):
        for body in ["null", "{}", '{"blocked": false}', '{"blocked": 1}',
                     '{"input": {"blocked": true}}', "[1, 2]", '"blocked"']:
            self.assertIsInstance(decide(DEFAULT_MESSAGE, body), types.Decision_Allow, body)

    def test_refuses_blocked_bodies(self):
        message, warning = parse_config('{"message": "no"}')
        self.assertIsNone(warning)
        decision = decide(message, '{"blocked": true, "input": 1}')
        self.assertIsInstance(decision, types.Decision_Deny)
        self.assertEqual(decision.value, types.Denial(
            status=422, code="BLOCKED_BY_POLICY", message="no", field="/blocked",
            retry_after_seconds=None))

    def test_invalid_config_falls_back_to_defaults(self):
        for config in ['{"mesage": "typo"}', "[]", '{"message": 5}', "{"]:
            message, warning = parse_config(config)
            self.assertEqual(message, DEFAULT_MESSAGE, config)
            self.assertIsNotNone(warning, config)
        self.assertEqual(parse_config("{}"), (DEFAULT_MESSAGE, None))


if __name__ == "__main__":
    unittest.main()
