import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import calc  # noqa: E402


class CalcTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(calc.add(2, 3), 5)

    def test_sub(self):
        self.assertEqual(calc.sub(2, 3), -1)

    def test_mul(self):
        self.assertEqual(calc.mul(2, 3), 6)

    def test_div(self):
        self.assertEqual(calc.div(6, 3), 2)


if __name__ == "__main__":
    unittest.main()
